"""Fault injection: bad input never gives a traceback, every exit path leaves every trial and run final, secrets
never reach a file or a store, transient launch faults are retried, not remembered. Stand-in engine (the
mechanisms do not depend on the engine), real Locust, real MLflow and Optuna stores.

Grow this folder whenever a new class of fault turns up: secrets (test_secrets.py), bad input (test_bad_input.py),
the frozen engine (test_fault_hang.py); exit paths and transient or broken inputs here.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from pathlib import Path

import optuna
import pytest

from autotune.search.study import SearchOptions, run_search
from tests.conftest import cli_invoke
from tests.stand_in import HERE, NullReporter, _mlflow_runs, _study


def _no_running(opts: SearchOptions, name: str = "s") -> None:
    """Every Optuna trial and every MLflow run (trials and the parent) is in a final state."""
    states = [t.state.name for t in _study(opts, name).trials]
    assert "RUNNING" not in states, states
    _, runs = _mlflow_runs(opts, name)
    assert runs and all(r.info.status != "RUNNING" for r in runs), [(r.info.run_name, r.info.status) for r in runs]


# ---------------------------------------------------------------- 3. every exit path leaves everything final

def test_unexpected_error_in_a_trial_fails_trial_run_and_parent(setup, monkeypatch):
    opts = setup("{choices: [2, 4]}", n_trials=2)

    def broken(*a, **k):
        raise RuntimeError("deliberate bug in the measurement")

    monkeypatch.setattr("autotune.search.screening.run_trial", broken)
    with pytest.raises(RuntimeError):
        run_search(opts, NullReporter())
    trial = _study(opts).trials[0]
    assert trial.state.name == "FAIL" and trial.user_attrs["fail_reason"] == "internal_error"
    _no_running(opts)
    _, runs = _mlflow_runs(opts)
    assert {r.data.tags.get("autotune.role"): r.info.status for r in runs} == {"study": "FAILED", "trial": "FAILED"}


def test_engine_that_cannot_be_executed_is_a_failed_trial_and_the_budget_stops(setup, tmp_path):
    """The launcher passed validation, then lost its execute bit: FAILED trials with a reason, the failure
    budget ends the search, nothing is left RUNNING."""
    opts = setup("{choices: [2, 4]}", n_trials=4, max_failures=1)
    launcher = tmp_path / "engine.sh"
    launcher.write_text(f"#!/bin/sh\nexec {sys.executable} {HERE / 'fake_engine.py'} \"$@\"\n")
    launcher.chmod(0o755)
    text = opts.space_file.read_text().replace(f"[{sys.executable}, {HERE / 'fake_engine.py'}]", f"[{launcher}]")
    opts.space_file.write_text(text)

    class LoseExecBit(NullReporter):
        def search_started(self, *a):
            launcher.chmod(0o644)

    summary = run_search(opts, LoseExecBit())
    assert "failure budget" in summary.stopped_because
    reasons = {t.user_attrs["fail_reason"] for t in _study(opts).trials}
    assert reasons == {"not_executable"}
    _no_running(opts)


def test_timeout_leaves_everything_final(setup):
    opts = setup("{choices: [2, 4]}", n_trials=5)
    opts.timeout_s = 1.0
    summary = run_search(opts, NullReporter())
    assert summary.stopped_because == "timeout" and summary.trials_complete == 1
    _no_running(opts)


def test_store_failing_mid_search_leaves_no_run_running(setup):
    """The artifact store breaks after the first trial: one TrackingError line, and the runs the store can still
    update are FAILED, not RUNNING."""
    import shutil

    from autotune.errors import TrackingError

    opts = setup("{choices: [2, 4]}", n_trials=3)

    class Breaker(NullReporter):
        def trial_finished(self, number, metrics, error):
            art = opts.run_dir / "mlartifacts"
            shutil.rmtree(art, ignore_errors=True)
            art.write_text("not a directory any more")

    with pytest.raises(TrackingError):
        run_search(opts, Breaker())
    _no_running(opts)


def test_unwritable_mlflow_store_fails_in_seconds_before_any_study(setup):
    opts = setup("{value: 4}", n_trials=1)
    opts.mlflow_uri = "sqlite:////proc/autotune-test/mlflow.db"  # unwritable even for root
    started = time.monotonic()
    res = cli_invoke(["search", "--space", str(opts.space_file), "--run-dir", str(opts.run_dir), "--mlflow-uri",
                      opts.mlflow_uri])
    assert res.exit_code == 2 and len(res.stderr.strip().splitlines()) == 1 and "--mlflow-uri" in res.stderr
    assert time.monotonic() - started < 10
    assert not optuna.get_all_study_summaries(f"sqlite:///{opts.run_dir / 'optuna.db'}")


# ---------------------------------------------------------------- 5. transient faults are not remembered

def test_port_taken_before_the_engine_binds_is_retried_on_a_new_port(setup, monkeypatch):
    import autotune.engines.vllm as vllm

    opts = setup("{value: 4}", n_trials=1)
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    real = vllm.free_port
    ports = iter([taken.getsockname()[1]])
    monkeypatch.setattr(vllm, "free_port", lambda host="127.0.0.1": next(ports, None) or real(host))
    try:
        summary = run_search(opts, NullReporter())
    finally:
        taken.close()
    assert summary.trials_complete == 1
    log = next(opts.run_dir.rglob("engine.log")).read_text()
    assert "Address already in use" in log  # the first attempt met the race


def test_damaged_weights_are_a_broken_input_never_a_known_failure(setup, tmp_path):
    """Weights the engine cannot read (a damage the header check cannot see) fail the trial as `broken_model`;
    once repaired, the same server part launches again: the damage was never a property of the config."""
    opts = setup("{value: 4}", n_trials=1)
    (tmp_path / "CORRUPT").write_text("")
    run_search(opts, NullReporter())
    (failed,) = _study(opts).trials
    assert failed.user_attrs["fail_reason"] == "broken_model", failed.user_attrs
    (tmp_path / "CORRUPT").unlink()  # repaired
    opts.n_trials = 2
    summary = run_search(opts, NullReporter())
    assert summary.trials_complete == 1
    assert [t.user_attrs.get("fail_reason") for t in _study(opts).trials] == ["broken_model", None]


def _truncated_model(folder: Path) -> Path:
    import numpy as np
    from safetensors.numpy import save_file

    folder.mkdir(parents=True, exist_ok=True)
    weights = folder / "model.safetensors"
    save_file({"w": np.zeros((64, 64), dtype=np.float32)}, str(weights))
    weights.write_bytes(weights.read_bytes()[:-1000])
    return folder


def test_a_truncated_model_is_named_before_any_launch(setup, tmp_path):
    """`validate` and `search` name the damaged file in one line (exit 2); the engine refuses it in milliseconds
    as `broken_model` if it is damaged after the search began, and launches nothing."""
    from autotune.config.knobs import ServerConfig
    from autotune.config.space import EngineConfig
    from autotune.engines.process import EngineRegistry
    from autotune.engines.vllm import VLLMEngine
    from autotune.errors import EngineLaunchError

    opts = setup("{value: 4}", n_trials=1)
    _truncated_model(tmp_path)
    for args in (["validate", str(opts.space_file)], ["search", "--space", str(opts.space_file), "--run-dir",
                                                       str(opts.run_dir)]):
        res = cli_invoke(args)
        assert res.exit_code == 2 and len(res.stderr.strip().splitlines()) == 1, res.output
        assert "knobs.model" in res.stderr and "model.safetensors is truncated" in res.stderr, res.stderr
    engine = VLLMEngine(EngineConfig(command=[sys.executable, str(HERE / "fake_engine.py")]),
                        EngineRegistry(tmp_path / "engines"))
    started = time.monotonic()
    with pytest.raises(EngineLaunchError) as err:
        engine.launch(ServerConfig(model=str(tmp_path)), tmp_path / "engine.log")
    assert err.value.reason == "broken_model" and time.monotonic() - started < 1
    assert not (tmp_path / "engine.log").exists()  # nothing was started


def test_transient_launch_failures_are_not_remembered(setup):
    """A health timeout (a busy host) may not recur: the same server config is launched again, unlike OOM."""
    opts = setup("{value: 15}", n_trials=2, max_failures=5, faults="15:hang")
    run_search(opts, NullReporter())
    assert [t.user_attrs["fail_reason"] for t in _study(opts).trials] == ["health_timeout", "health_timeout"]


def test_permanent_launch_failures_are_remembered(setup):
    opts = setup("{value: 14}", n_trials=2, max_failures=5, faults="14:oom")
    run_search(opts, NullReporter())
    reasons = [t.user_attrs["fail_reason"] for t in _study(opts).trials]
    assert reasons[0] == "oom" and len(reasons) >= 2 and set(reasons[1:]) == {"known_failure"}
    assert len(list((opts.run_dir / "s").glob("trial-*/engine.log"))) == 1  # launched once


def test_an_engine_that_dies_on_its_first_request_is_remembered_as_a_refused_server_part(setup):
    """Healthy at launch, dead at the first request (vLLM's CPU int8 kernel refusing float32 activations on an
    AVX512-BF16 host): the cause from the engine's log names the failure, and the server part is not launched
    again for the next application config."""
    opts = setup("{value: 16}", n_trials=2, max_failures=5, faults="16:dies",
                 client="  architecture: {choices: [one_call, parallel]}")
    run_search(opts, NullReporter())
    trials = _study(opts).trials
    assert trials[0].user_attrs["fail_reason"] == "unsupported", trials[0].user_attrs
    assert "expect A to be bfloat16 or half" in trials[0].user_attrs["fail_message"]
    assert trials[0].user_attrs["launch_failure"] is True
    assert {t.user_attrs["fail_reason"] for t in trials[1:]} == {"known_failure"}
    assert len(list((opts.run_dir / "s").glob("trial-*/engine.log"))) == 1  # launched once


def test_stopped_process_has_no_secret_in_environment_of_load_generator(monkeypatch):
    """The load generator's environment holds no secret-looking variable except the one bearer token it needs."""
    from autotune.loadgen.launch import clean_env

    monkeypatch.setenv("SOME_SERVICE_TOKEN", "tok-123456")
    assert "SOME_SERVICE_TOKEN" not in clean_env() and "PATH" in clean_env()
    assert os.environ["SOME_SERVICE_TOKEN"] == "tok-123456"


def test_mlflow_database_gone_mid_search_is_one_line_on_screen(setup, monkeypatch, capfd):
    """The MLflow database disappears after the first trial (replaced by a folder): the CLI prints one `error:`
    line and no MLflow traceback; the completed trial stays in Optuna, and nothing is left RUNNING there."""
    import shutil

    import autotune.progress as progress

    opts = setup("{choices: [2, 4]}", n_trials=3)
    db = opts.run_dir / "mlflow.db"
    real = progress.RichReporter.trial_finished

    def break_store(self, number, metrics, error):
        real(self, number, metrics, error)
        db.unlink()
        db.mkdir()
        shutil.rmtree(opts.run_dir / "mlartifacts", ignore_errors=True)

    monkeypatch.setattr(progress.RichReporter, "trial_finished", break_store)
    res = cli_invoke(["search", "--space", str(opts.space_file), "--run-dir", str(opts.run_dir)])
    captured = capfd.readouterr()
    screen = res.output + captured.out + captured.err
    errors = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert res.exit_code == 4 and len(errors) == 1 and errors[0].startswith("error: MLflow store"), res.stderr
    assert "Traceback" not in screen and "SQLAlchemy" not in captured.err
    states = [t.state.name for t in _study(opts).trials]
    assert states[0] == "COMPLETE" and "RUNNING" not in states


def test_engine_frozen_during_launch_fails_in_seconds(setup, tmp_path):
    """SIGSTOP while the engine starts: `engine_hung` after a few seconds, not at startup_timeout_s (60 here)."""
    import signal

    from autotune.engines.process import group_alive

    opts = setup("{value: 15}", n_trials=1, max_failures=0, faults="15:hang")  # never becomes healthy
    opts.space_file.write_text(opts.space_file.read_text().replace("startup_timeout_s: 3", "startup_timeout_s: 60"))
    frozen: list[int] = []

    class FreezeAtLaunch(NullReporter):
        def phase(self, name):
            if name.startswith("launching (") and not frozen:
                [entry] = [json.loads(p.read_text()) for p in (opts.run_dir / "engines").glob("*.json")]
                os.killpg(entry["pgid"], signal.SIGSTOP)
                frozen.append(entry["pgid"])

    started = time.monotonic()
    run_search(opts, FreezeAtLaunch())
    assert frozen and time.monotonic() - started < 20
    assert _study(opts).trials[0].user_attrs["fail_reason"] == "engine_hung"
    assert not group_alive(frozen[0])


def test_a_damaged_bundle_is_one_line_for_nightly(setup, tmp_path):
    opts = setup("{value: 4}", n_trials=1)
    run_search(opts, NullReporter())
    bad = tmp_path / "exports" / "s" / "v1"
    bad.mkdir(parents=True)
    (bad / "bundle.json").write_text("{not json")
    res = cli_invoke(["nightly", "--study", "s", "--run-dir", str(opts.run_dir), "--exports", str(tmp_path / "exports"),
                      "--reports", str(tmp_path / "nightly"), "--new-trials", "0", "--confirm", "2"])
    assert res.exit_code == 2 and "bundle.json" in res.stderr and len(res.stderr.strip().splitlines()) == 1


def test_interrupt_between_batched_trials_leaves_none_running(setup, monkeypatch):
    """Ctrl-C while the front is updated between two trials of a batch: the asked, unstarted ones are
    interrupted (re-enqueued), none stays RUNNING."""
    import autotune.search.study as study_mod

    opts = setup("{choices: [2, 4]}", n_trials=3)
    opts.space_file.write_text(opts.space_file.read_text().replace("batch: 1,", "batch: 3,"))
    real, calls = study_mod.update_front, []

    def interrupted_once(*a, **k):
        calls.append(1)
        if len(calls) == 1:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(study_mod, "update_front", interrupted_once)
    with pytest.raises(KeyboardInterrupt):
        run_search(opts, NullReporter())
    trials = _study(opts).trials
    states = [t.state.name for t in trials]
    assert states.count("COMPLETE") == 1 and "RUNNING" not in states and states.count("WAITING") == 2, states
    assert all(t.user_attrs.get("interrupted") for t in trials if t.state.name == "FAIL")


def test_runs_a_broken_store_left_running_are_repaired_on_resume(setup):
    """MLflow lost the end of a trial (the store broke) while Optuna kept it: the next search logs the metrics
    Optuna kept and ends the run, instead of leaving it RUNNING forever."""
    opts = setup("{choices: [2, 4]}", n_trials=1)
    run_search(opts, NullReporter())
    client, runs = _mlflow_runs(opts)
    [child] = [r for r in runs if r.data.tags.get("autotune.role") == "trial"]
    client.update_run(child.info.run_id, status="RUNNING")
    opts.n_trials = 2
    run_search(opts, NullReporter())
    repaired = client.get_run(child.info.run_id)
    assert repaired.info.status == "FINISHED" and repaired.data.tags.get("autotune.repaired") == "true"
    assert repaired.data.metrics["p95_task_ms"] > 0
    _no_running(opts)


def test_an_unresponsive_store_is_not_waited_for_twice(monkeypatch):
    """After one call failed slowly (a frozen server), later calls fail at once: the exit stays bounded."""
    import autotune.tracking.mlflow_tracker as mt
    from autotune.errors import TrackingError

    monkeypatch.setattr(mt, "UNRESPONSIVE_S", 0.05)
    tracker = mt.MlflowTracker.__new__(mt.MlflowTracker)
    tracker.uri, tracker.unresponsive, tracker._open, tracker.parent_id = "http://x", False, set(), "p"
    calls = []

    class Frozen:
        def set_tag(self, *a):
            calls.append(a)
            time.sleep(0.1)
            raise TimeoutError("read timed out")

    tracker.client = Frozen()
    with pytest.raises(TrackingError):
        tracker.mark_interrupted("r1")
    started = time.monotonic()
    with pytest.raises(TrackingError, match="stopped answering"):
        tracker.mark_interrupted("r2")
    tracker.fail_open_runs()
    assert len(calls) == 1 and time.monotonic() - started < 0.05
