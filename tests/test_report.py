"""`autotune report` on a fake-engine study: front table, projections, 3-D and parallel HTML, hypervolume,
application-knob tables and failures by reason."""

from __future__ import annotations

from autotune.study import run_search
from autotune.tracking.study_figures import hypervolume_curve
from tests.conftest import cli_invoke
from tests.test_study import NullReporter
from tests.test_study import setup as setup  # noqa: F401 (the fixture)


def test_hypervolume_never_decreases():
    rows = [{"trial": i, "a": a, "b": b, "pareto": True} for i, (a, b) in enumerate([(3, 3), (2, 4), (1, 1), (5, 5)])]
    curve = hypervolume_curve(rows, [("a", "minimize"), ("b", "minimize")])
    hv = [h for _, h in curve]
    assert hv == sorted(hv) and hv[2] > hv[1] and hv[3] == hv[2]  # trial 3 is dominated: no gain


def test_report_files(setup, tmp_path):
    opts = setup("{choices: [2, 4, 13]}", n_trials=4, client="  output_format: {choices: [json, yaml]}")
    run_search(opts, NullReporter())
    out = tmp_path / "rep"
    res = cli_invoke(["report", "--study", "s", "--run-dir", str(opts.run_dir), "--out", str(out)])
    assert res.exit_code == 0, res.output
    md = (out / "README.md").read_text()
    names = {p.name for p in out.iterdir()}
    assert {"s-pareto.png", "s-pareto-3d.html", "s-parallel.html", "s-hypervolume.png"} <= names
    assert "Pareto front (" in md and "Hypervolume (scaled objectives) after each trial" in md
    if "13" in md:  # max_num_seqs 13 makes the fake engine refuse to start
        assert "Failures by reason: unsupported" in md
