"""CLI: one-line errors, exit codes, no tracebacks (through `main`, the one top-level guard)."""

from __future__ import annotations

import pytest

from autotune.cli import main
from tests.conftest import REPO


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of `autotune ARGS`, in this process."""
    with pytest.raises(SystemExit) as exc:
        main(list(args))
    out = capsys.readouterr()
    return exc.value.code or 0, out.out, out.err


def test_help_everywhere(capsys):
    for args in ([], ["search"], ["validate"], ["models"], ["models", "prepare"], ["ui"], ["nightly"], ["export"]):
        code, out, _ = run_cli(capsys, *args, "--help")
        assert code == 0 and "Usage" in out


def test_no_arguments_prints_help(capsys):
    code, out, _ = run_cli(capsys)
    assert code == 0 and "Usage" in out and "search" in out


def test_validate_bad_file_is_one_line(capsys, write):
    bad = write("bad.yaml", "name: t\nengine: {python: /bin/sh}\nknobs:\n  max_num_seqs: {low: 9, high: 1}\n")
    code, out, err = run_cli(capsys, "validate", str(bad))
    assert code == 2 and out == ""
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in err
    assert "knobs.max_num_seqs" in lines[0] and "inverted range" in lines[0] and str(bad) in lines[0]


def test_validate_shipped_workload(capsys):
    code, out, _ = run_cli(capsys, "validate", str(REPO / "workloads/extraction.yaml"))
    assert code == 0 and "ok" in out


def test_search_with_missing_engine_interpreter(capsys, write):
    space = write("s.yaml", "name: t\nengine: {python: /nope/python}\n")
    code, _, err = run_cli(capsys, "search", "--space", str(space))
    assert code == 2 and "engine.python: engine interpreter does not exist" in err


def test_models_prepare_unknown_name(capsys):
    code, _, err = run_cli(capsys, "models", "prepare", "no-such-model")
    assert code == 3 and "unknown bundled model 'no-such-model'" in err


def test_unexpected_error_is_one_line_and_a_log_file(capsys, monkeypatch, tmp_path):
    import autotune.cli as cli

    monkeypatch.setenv("AUTOTUNE_LOG_DIR", str(tmp_path))

    class Boom:
        def __format__(self, spec):
            raise RuntimeError("deliberate bug\nsecond line")

    monkeypatch.setattr(cli, "__version__", Boom())
    code, _, err = run_cli(capsys, "version")
    lines = err.strip().splitlines()
    assert code == 1 and len(lines) == 1 and "Traceback" not in err
    assert "unexpected RuntimeError: deliberate bug" in lines[0]
    logs = list(tmp_path.glob("crash-*.log"))
    assert len(logs) == 1 and str(logs[0]) in lines[0] and "Traceback" in logs[0].read_text()
