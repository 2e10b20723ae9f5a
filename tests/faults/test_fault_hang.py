"""A frozen engine (SIGSTOP on its process group mid-measurement) is a FAILED trial `engine_hung`, found within
the stall timeout, and torn down fast; a slow engine that keeps streaming is not hung."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import psutil

from autotune.engines.process import group_alive, start_group, terminate_group
from autotune.loadgen.runner import merge_summaries
from autotune.search.study import run_search
from tests.stand_in import Freezer, NullReporter, _mlflow_runs, _study


def _workload(tmp_path: Path, **keys: object) -> None:
    wl = tmp_path / "wl.yaml"
    lines = [ln for ln in wl.read_text().splitlines() if ln.split(":")[0] not in keys]
    wl.write_text("\n".join([*lines, *(f"{k}: {v}" for k, v in keys.items())]) + "\n")


def test_frozen_engine_is_a_failed_engine_hung_trial(setup, tmp_path):
    opts = setup("{value: 4}", n_trials=1, max_failures=0)
    _workload(tmp_path, duration_s=30, drain_timeout_s=30, stall_timeout_s=2)  # unguarded: 60+ s, COMPLETE
    reporter = Freezer(opts.run_dir, after_s=2.0)
    t0 = time.monotonic()
    summary = run_search(opts, reporter)
    wall = time.monotonic() - t0
    assert reporter.frozen_at is not None and reporter.finished_at is not None
    detect = reporter.finished_at - reporter.frozen_at
    print(f"search {wall:.1f} s; SIGSTOP -> trial FAILED {detect:.1f} s")
    assert summary.trials_failed == 1 and summary.trials_complete == 0
    trial = _study(opts).trials[0]
    assert trial.state.name == "FAIL" and trial.user_attrs["fail_reason"] == "engine_hung"
    assert "stall_timeout_s 2" in trial.user_attrs["fail_message"]
    _, runs = _mlflow_runs(opts)
    [child] = [r for r in runs if r.data.tags.get("autotune.role") == "trial"]
    assert child.info.status == "FAILED" and child.data.tags["autotune.fail_reason"] == "engine_hung"
    load = opts.run_dir / "s" / "trial-0000" / "load"
    loadgen = json.loads((load / "summary.json").read_text())
    assert loadgen["engine_hung"] is True and loadgen["stall_s"] >= 2
    assert (load / "requests.jsonl").read_text().strip(), "the requests done before the freeze are kept"
    # stall (2 s) + watchdog poll + Locust exit + teardown (1 s grace for a stopped group) + MLflow
    assert detect < 10 and wall < 30
    assert not list((opts.run_dir / "engines").glob("*.json")) and not group_alive(reporter.pgid)


def test_silent_engine_that_answers_metrics_is_hung_after_the_setting_not_twice(setup, tmp_path):
    """Requests accepted and never answered while /metrics still answers (its counter stands still): the stall is
    confirmed at the setting plus a /metrics round trip, not at twice the setting."""
    opts = setup("{value: 4}", n_trials=1, max_failures=0, faults="*:silent")
    stall = 4.0
    _workload(tmp_path, duration_s=30, drain_timeout_s=30, stall_timeout_s=stall)
    run_search(opts, NullReporter())
    trial = _study(opts).trials[0]
    assert trial.user_attrs["fail_reason"] == "engine_hung", trial.user_attrs
    load = opts.run_dir / "s" / "trial-0000" / "load"
    summary = json.loads((load / "summary.json").read_text())
    detected = summary["stall_confirmed_ts"] - summary["t0"]  # closed-loop users send at once: t0 ~ first request
    print(f"stall_timeout_s {stall:g}: confirmed {detected:.2f} s after the load began")
    assert stall <= detected < 1.4 * stall


def test_slow_but_streaming_engine_is_not_hung(setup, tmp_path):
    """The fake's `slow` fault streams a chunk every 20 ms; a 0.3 s stall timeout is far above the gap but
    below a whole request: progress is counted per chunk, not per response."""
    opts = setup("{value: 1}", n_trials=1, max_failures=0, faults="1:slow")
    _workload(tmp_path, stall_timeout_s=0.3)
    summary = run_search(opts, NullReporter())
    assert summary.trials_complete == 1, _study(opts).trials[0].user_attrs.get("fail_message")
    load = opts.run_dir / "s" / "trial-0000" / "load"
    assert json.loads((load / "summary.json").read_text())["engine_hung"] is False
    e2e = [json.loads(x)["e2e_s"] for x in (load / "requests.jsonl").read_text().splitlines()]
    assert max(e2e) > 0.3, "some request must outlast the stall timeout for this test to mean anything"


def test_terminate_group_of_a_stopped_group_does_not_wait_the_timeout(tmp_path):
    proc = start_group(["sh", "-c", "sleep 60 & sleep 60 & wait"], dict(os.environ), tmp_path / "log")
    end = time.monotonic() + 5
    while len(psutil.Process(proc.pid).children()) < 2 and time.monotonic() < end:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGSTOP)
    while psutil.Process(proc.pid).status() != psutil.STATUS_STOPPED and time.monotonic() < end:
        time.sleep(0.05)
    t0 = time.monotonic()
    assert terminate_group(proc.pid, timeout_s=30) is True  # SIGTERM cannot act on a stopped process
    assert time.monotonic() - t0 < 5
    assert not group_alive(proc.pid)


def test_merged_summary_is_hung_if_any_worker_is():
    parts = [{"loadgen_wall_s": 5.0, "engine_hung": False},
             {"loadgen_wall_s": 4.0, "engine_hung": True, "stall_s": 2.5},
             {"loadgen_wall_s": 4.0, "engine_hung": True, "stall_s": 3.0}]
    merged = merge_summaries(parts)
    assert merged["engine_hung"] is True and merged["stall_s"] == 3.0
    assert merge_summaries(parts[:1])["engine_hung"] is False and "stall_s" not in merge_summaries(parts[:1])
