"""`autotune report` on a fake-engine study: front table, projections, 3-D and parallel HTML, hypervolume,
application-knob tables and failures by reason."""

from __future__ import annotations

import math

from autotune.ops.report import FORMAT_COLS, NONE, _n_tasks, _table
from autotune.search.study import run_search
from autotune.tracking.study_figures import hypervolume_curve, hypervolume_png
from tests.conftest import cli_invoke
from tests.stand_in import NullReporter


def test_hypervolume_never_decreases():
    rows = [{"trial": i, "a": a, "b": b, "pareto": True} for i, (a, b) in enumerate([(3, 3), (2, 4), (1, 1), (5, 5)])]
    curve = hypervolume_curve(rows, [("a", "minimize"), ("b", "minimize")])
    hv = [h for _, h in curve]
    assert hv == sorted(hv) and hv[2] > hv[1] and hv[3] == hv[2]  # trial 3 is dominated: no gain


def test_report_files(setup, tmp_path):
    opts = setup("{choices: [2, 4, 13]}", n_trials=4, client="  output_format: {choices: [json, yaml]}",
                 faults="13:unsupported")
    run_search(opts, NullReporter())
    out = tmp_path / "rep"
    res = cli_invoke(["report", "--study", "s", "--run-dir", str(opts.run_dir), "--out", str(out)])
    assert res.exit_code == 0, res.output
    md = (out / "README.md").read_text()
    names = {p.name for p in out.iterdir()}
    assert {"s-pareto.png", "s-pareto-3d.html", "s-parallel.html", "s-hypervolume.png"} <= names
    assert "Pareto front (" in md and "Hypervolume (scaled objectives) after each trial" in md
    assert "reference point 10% beyond the worst value" in md
    assert "| windows | n tasks | n items | class |" in md
    if "13" in md:  # max_num_seqs 13 is the fake engine's `unsupported` fault: it refuses to start
        assert "Failures by reason: unsupported" in md


def test_hypervolume_plot_integer_trials_and_zero_floor():
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig = hypervolume_png([(0, 0.81), (1, 0.83), (2, 0.84)])  # a range a zoomed axis would blow up
    ax = fig.axes[0]
    fig.canvas.draw()
    assert isinstance(ax.xaxis.get_major_locator(), MaxNLocator)
    lo, hi = ax.get_xlim()
    ticks = [t for t in ax.get_xticks() if lo <= t <= hi]
    assert ticks and all(float(t).is_integer() for t in ticks)
    assert ax.get_ylim()[0] == 0 and ax.get_ylim()[1] >= 0.84
    assert "reference" in ax.get_ylabel()
    plt.close(fig)


def test_trial_table_shows_n_and_intervals():
    rows = [{"trial": 0, "params": {"output_format": "json", "constrained": True},
             "metrics": {"validity_rate": 0.9, "quality": 0.8, "quality_ci_low": 0.7, "quality_ci_high": 0.9,
                         "tasks_ok": 48.0, "task_error_rate": 0.04, "eval_items": 50.0, "p95_task_ms": 1200.0}},
            {"trial": 1, "params": {"output_format": "yaml", "constrained": False},  # an old trial: no n, no interval
             "metrics": {"validity_rate": 0.5, "quality": 0.6, "p95_task_ms": math.nan}}]
    lines = _table(("output_format", "constrained"), FORMAT_COLS, rows).splitlines()
    head = [c.strip() for c in lines[0].strip("|").split("|")]
    assert head[-3:] == ["n tasks", "n items", "trial"] and "accuracy [95% CI]" in head
    first = dict(zip(head, [c.strip() for c in lines[2].strip("|").split("|")], strict=True))
    second = dict(zip(head, [c.strip() for c in lines[3].strip("|").split("|")], strict=True))
    assert first["accuracy [95% CI]"] == "0.800 [0.700, 0.900]"
    assert first["n tasks"] == "50 (2 failed)" and first["n items"] == "50"
    assert second["accuracy [95% CI]"] == f"0.600 [{NONE}]"
    assert second["n tasks"] == NONE and second["n items"] == NONE and second["p95 task ms"] == NONE
    assert first["valid"] == "90%"  # no interval stored for validity: the column does not promise one


def test_n_tasks_over_windows():
    """A config's windows (search or confirmation) add up; a window whose tasks all failed has no known count."""
    assert _n_tasks([{"tasks_ok": 40.0}, {"tasks_ok": 38.0, "task_error_rate": 0.05}]) == "80 (2 failed)"
    assert _n_tasks([{"tasks_ok": 0.0, "task_error_rate": 1.0}]) == NONE
    assert _n_tasks([]) == NONE
