from __future__ import annotations

import contextlib
import io
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

from autotune.search.study import SearchOptions
from tests.stand_in import EXTRACTION_WORKLOAD, FIXED_LOAD, HERE, write_items

REPO = Path(__file__).resolve().parents[1]


def load_benchmark(name: str):
    """A script of benchmarks/ (not a package) imported as the module `name`."""
    import importlib.util
    import sys

    spec = importlib.util.spec_from_file_location(name, REPO / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and pickling look their module up by name
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def write(tmp_path: Path):
    """write("name.yaml", text) -> path, with the text dedented."""

    def _write(name: str, text: str) -> Path:
        p = tmp_path / name
        p.write_text(textwrap.dedent(text))
        return p

    return _write


@dataclass
class CliResult:
    exit_code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def cli_invoke(args: list[str]) -> CliResult:
    """`autotune ARGS` in this process through `main`, the CLI's one top-level guard (as the console script)."""
    from autotune.cli import main

    out, err = io.StringIO(), io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main(list(args))
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return CliResult(code, out.getvalue(), err.getvalue())


@pytest.fixture
def setup(tmp_path, write):
    """setup(max_num_seqs spec, ...) -> SearchOptions of a stand-in engine search in tmp_path (tests/stand_in.py)."""
    write_items(tmp_path, 5)
    write("wl.yaml", EXTRACTION_WORKLOAD + FIXED_LOAD)

    def make(seqs: str, n_trials: int = 2, max_failures: int = 5, study: str = "s",
             arrival: str = "{mode: closed, users: 2}", client: str = "", sampler: str = "random",
             faults: str = "", noise: int = 0) -> SearchOptions:
        """`faults`: the stand-in engine's explicit faults by max_num_seqs value (tests/fake_engine.py); `noise`:
        `search.noise_repeats` (0 here, so trial counts and engine launches stay those of the trials)."""
        wl = (tmp_path / "wl.yaml").read_text().replace("{mode: closed, users: 2}", arrival)
        (tmp_path / "wl.yaml").write_text(wl)
        space = write("space.yaml", f"""\
            name: {study}
            workload: wl.yaml
            engine:
              command: [{sys.executable}, {HERE / 'fake_engine.py'}]
              startup_timeout_s: 3
              shutdown_timeout_s: 3
              env: {{FAKE_FAULTS: '{faults}'}}
            knobs:
              model: {{value: {tmp_path}}}
              max_num_seqs: {seqs}
            {client}
            constraints:
              - {{metric: error_rate, op: "<=", value: 0.01}}
            search: {{n_trials: {n_trials}, max_failures: {max_failures}, sampler: {sampler}, batch: 1,
                      noise_repeats: {noise}}}
            """)
        return SearchOptions(space_file=space, run_dir=tmp_path / "runs")

    return make
