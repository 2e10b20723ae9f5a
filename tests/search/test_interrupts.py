"""Ctrl-C, SIGTERM and kill -9 of a running `autotune search` (stand-in engine, real processes)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import psutil
import pytest

from tests.stand_in import HERE

REPO = HERE.parent


def _write_inputs(tmp_path: Path) -> Path:
    (tmp_path / "items.jsonl").write_text(json.dumps({"id": "a", "input": {"article": "x"},
                                                      "reference": {"name": "", "email": "", "address": ""}}) + "\n")
    (tmp_path / "wl.yaml").write_text(
        "name: w\ndataset: items.jsonl\nfields: [{name: name, question: 'Who?'}]\n"
        "prompt: {context: '{article}', task: 'Who?'}\narrival: {mode: closed, users: 1}\n"
        "warmup_s: 0.5\nduration_s: 20\ndrain_timeout_s: 5\nmax_tokens: 8\n")
    space = tmp_path / "space.yaml"
    space.write_text(
        f"name: s\nworkload: wl.yaml\nengine: {{command: [{sys.executable}, {HERE / 'fake_engine.py'}], "
        f"startup_timeout_s: 10, shutdown_timeout_s: 3}}\n"
        f"knobs:\n  model: {{value: {tmp_path}}}\n  max_num_seqs: {{choices: [2, 4]}}\n"
        f"search: {{n_trials: 2, sampler: random, batch: 1, noise_repeats: 0}}\n")
    return space


def _start(space: Path, run_dir: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "autotune", "search", "--space", str(space), "--run-dir",
                             str(run_dir)], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True, preexec_fn=_sigint_default)


def _sigint_default() -> None:
    """A background job of a non-interactive shell starts with SIGINT ignored, and Python then keeps it ignored: a
    suite run as `pytest &` must still test Ctrl-C as a terminal delivers it."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _engines(tmp_path: Path) -> list[psutil.Process]:
    procs = []
    for p in psutil.process_iter(["cmdline"]):
        cmd = " ".join(p.info["cmdline"] or [])
        if "fake_engine.py" in cmd and str(tmp_path) in cmd:
            procs.append(p)
    return procs


def _wait_measuring(run_dir: Path, timeout: float = 60) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if list(run_dir.glob("s/trial-*/load/load-config.json")):
            time.sleep(2.0)  # locust is running against the engine now
            return
        time.sleep(0.2)
    raise AssertionError("the trial never reached the load phase")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_signal_mid_trial_stops_engine_and_marks_trial(tmp_path, sig):
    space = _write_inputs(tmp_path)
    run_dir = tmp_path / "runs"
    proc = _start(space, run_dir)
    _wait_measuring(run_dir)
    assert _engines(tmp_path), "engine should be running mid-trial"
    proc.send_signal(sig)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, out.decode()[-2000:]
    assert b"Traceback" not in out and b"rerun the same command to resume" in out
    assert _engines(tmp_path) == []
    study = optuna.load_study(study_name="s", storage=f"sqlite:///{run_dir / 'optuna.db'}")
    assert study.trials[0].user_attrs.get("interrupted") is True
    assert study.trials[1].state.name == "WAITING" and study.trials[1].user_attrs["rerun_of"] == 0
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{run_dir / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("s").experiment_id])
    assert {r.data.tags["autotune.role"]: r.info.status for r in runs} == {"study": "KILLED", "trial": "KILLED"}


def test_kill_9_then_rerun_reaps_and_resumes(tmp_path):
    space = _write_inputs(tmp_path)
    run_dir = tmp_path / "runs"
    proc = _start(space, run_dir)
    _wait_measuring(run_dir)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    # the rerun must leave no engine behind and finish the study, re-measuring the interrupted trial
    rerun = subprocess.run([sys.executable, "-m", "autotune", "search", "--space", str(space), "--run-dir",
                            str(run_dir), "--n-trials", "1"], cwd=REPO, capture_output=True, timeout=180)
    assert rerun.returncode == 0, rerun.stdout.decode()[-2000:] + rerun.stderr.decode()[-2000:]
    time.sleep(0.5)
    assert _engines(tmp_path) == []
    study = optuna.load_study(study_name="s", storage=f"sqlite:///{run_dir / 'optuna.db'}")
    first, second = study.trials[0], study.trials[1]
    assert first.state.name == "FAIL" and first.user_attrs["interrupted"] is True
    assert second.state.name == "COMPLETE" and second.user_attrs["rerun_of"] == 0
    assert second.params == first.params
