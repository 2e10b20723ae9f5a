"""The search display off a terminal (CI, `| tee`): no live frame, the front printed once after a blank line."""

from __future__ import annotations

import io

from rich.console import Console

from autotune.progress import RichReporter, print_front
from tests.conftest import cli_invoke

OBJECTIVES = [("p95_task_ms", "minimize"), ("quality", "maximize")]


def _row(trial: int, p95: float, quality: float) -> dict:
    return {"trial": trial, "max_num_seqs": 2 ** trial, "p95_task_ms": p95, "quality": quality, "windows": 1}


def test_off_terminal_front_printed_once_on_its_own_line():
    buf = io.StringIO()
    console = Console(file=buf, force_terminal=False, width=160)
    assert not console.is_terminal
    rows = []
    with RichReporter(console) as reporter:
        reporter.search_started("s", 3, 0)
        for n, (p95, q) in enumerate([(120.0, 0.7), (90.0, 0.6), (150.0, 0.9)]):
            reporter.trial_started(n, {"max_num_seqs": 2 ** n})
            reporter.phase("measure")
            reporter.trial_finished(n, {"p95_task_ms": p95, "quality": q}, None)
            rows.append(_row(n, p95, q))
            reporter.front(rows, OBJECTIVES)
    print_front(console, rows, OBJECTIVES, "Pareto front of study s")
    text = buf.getvalue()
    assert "best-so-far" not in text  # the live frame is not replayed into the log
    assert text.count("Pareto front of study s") == 1
    lines = text.splitlines()
    at = next(i for i, line in enumerate(lines) if "Pareto front of study s" in line)
    assert lines[at].strip() == "Pareto front of study s"  # its own line, not glued to a border
    assert lines[at - 1].strip() == ""  # a blank line before the title
    assert text.index("trial 2 done") < text.index("Pareto front of study s")
    assert sum(line.startswith("trial ") and " done " in line for line in lines) == 3  # per-trial lines stay


def test_terminal_keeps_the_live_front():
    console = Console(file=io.StringIO(), force_terminal=True, width=160)
    with RichReporter(console) as reporter:
        assert reporter.live is not None
        reporter.search_started("s", 1, 0)
        reporter.front([_row(0, 100.0, 0.8)], OBJECTIVES)
        assert reporter.front_view is not None


def test_search_cli_off_terminal_prints_front_once(setup):
    """`autotune search | tee`: stdout is no terminal; the front appears once, after the per-trial lines."""
    opts = setup("{choices: [2, 4]}", n_trials=2)
    res = cli_invoke(["search", "--space", str(opts.space_file), "--run-dir", str(opts.run_dir)])
    assert res.exit_code == 0, res.output + res.stderr
    assert "best-so-far" not in res.output and res.output.count("Pareto front of study s") == 1
    lines = res.output.splitlines()
    at = next(i for i, line in enumerate(lines) if "Pareto front of study s" in line)
    assert lines[at].strip() == "Pareto front of study s" and lines[at - 1].strip() == ""


def test_off_terminal_front_shows_every_knob_value_whole_at_80_columns():
    """A CI log is 80 columns: the knobs the members differ in are columns, the shared ones go under the title,
    and no value is cut (`quantization=w…` was); each done line carries capacity with its bracket."""
    buf = io.StringIO()
    console = Console(file=buf, force_terminal=False, width=80)
    rows = [{"trial": n, "model": "smollm2-135m-instruct", "quantization": q, "architecture": a,
             "output_format": f, "p95_task_ms": p95, "quality": qual, "windows": 1}
            for n, (q, a, f, p95, qual) in enumerate([("w8a8-int8-dynamic", "parallel", "minimal", 900.0, 0.5),
                                                       ("none", "sequential_subquestions", "json", 800.0, 0.4)])]
    print_front(console, rows, OBJECTIVES, "Pareto front of study s")
    text = buf.getvalue()
    for value in ("w8a8-int8-dynamic", "sequential_subquestions", "minimal", "parallel"):
        assert value in text, (value, text)
    assert "shared by every member: model=smollm2-135m-instruct" in text
    header = next(line for line in text.splitlines() if "quantization" in line)
    assert "architecture" in header and "output_format" in header, "one column per varying knob"
    reporter = RichReporter(console)
    reporter.trial_finished(4, {"capacity_tps": 1.25, "capacity_low": 1.25, "capacity_high": 1.375,
                                "capacity_resolved": 1.0, "p95_task_ms": 900.0}, None)
    reporter.trial_finished(5, {"capacity_tps": 2.0, "capacity_low": 2.0, "capacity_high": float("inf"),
                                "capacity_resolved": 0.0, "p95_task_ms": 900.0}, None)
    lines = buf.getvalue().splitlines()
    assert any("trial 4 done capacity_tps=1.25 in [1.25, 1.375)" in line for line in lines)
    assert any("trial 5 done capacity_tps=2 in [2, inf) unresolved" in line for line in lines)
