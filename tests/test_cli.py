"""CLI: one-line errors, exit codes, no tracebacks."""

from __future__ import annotations

from typer.testing import CliRunner

from autotune.cli import app
from tests.conftest import REPO

runner = CliRunner()


def test_help_everywhere():
    for args in ([], ["search"], ["validate"], ["models"], ["models", "prepare"], ["ui"]):
        result = runner.invoke(app, [*args, "--help"])
        assert result.exit_code == 0 and "Usage" in result.output


def test_validate_bad_file_is_one_line(write):
    bad = write("bad.yaml", "name: t\nengine: {python: /bin/sh}\nknobs:\n  max_num_seqs: {low: 9, high: 1}\n")
    result = runner.invoke(app, ["validate", str(bad)])
    assert result.exit_code == 2
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in result.output
    assert "knobs.max_num_seqs" in lines[0] and "inverted range" in lines[0] and str(bad) in lines[0]


def test_validate_shipped_workload():
    result = runner.invoke(app, ["validate", str(REPO / "workloads/extraction.yaml")])
    assert result.exit_code == 0 and "ok" in result.output


def test_search_with_missing_engine_interpreter(write):
    space = write("s.yaml", "name: t\nengine: {python: /nope/python}\n")
    result = runner.invoke(app, ["search", "--space", str(space)])
    assert result.exit_code == 2 and "engine.python: engine interpreter does not exist" in result.output


def test_models_prepare_unknown_name():
    result = runner.invoke(app, ["models", "prepare", "no-such-model"])
    assert result.exit_code == 3 and "unknown bundled model 'no-such-model'" in result.output
