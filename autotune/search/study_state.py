"""What the study's trials say, and the moves that keep every trial final: which trials count, which run
elsewhere, the failure budget, who owns a trial, interruption (FAIL + re-enqueue) and recovery, batched asks."""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import socket
from typing import Any

import optuna
import psutil

from autotune.config import ServerConfig, SpaceConfig, split_values
from autotune.errors import TrackingError
from autotune.samplers import suggest
from autotune.secrets import scrub
from autotune.tracking import MlflowTracker


def finished_trials(study) -> int:
    """Trials that measured something (complete, screened out, or failed); re-proposals of a measured config and
    interrupted trials do not count."""
    states = optuna.trial.TrialState
    return sum(1 for t in study.trials if t.user_attrs.get("duplicate_of") is None and (
        t.state in (states.COMPLETE, states.PRUNED)
        or (t.state == states.FAIL and not t.user_attrs.get("interrupted"))))


def running_elsewhere(study) -> int:
    """Trials other live workers are measuring now (they will finish and count)."""
    me = os.getpid()
    return sum(1 for t in study.get_trials(deepcopy=False, states=[optuna.trial.TrialState.RUNNING])
               if t.user_attrs.get("owner", {}).get("pid") != me and owner_alive(t.user_attrs.get("owner")))


def failures_since(study, since: datetime.datetime) -> int:
    return sum(1 for t in study.get_trials(deepcopy=False, states=[optuna.trial.TrialState.FAIL])
               if not t.user_attrs.get("interrupted") and t.user_attrs.get("duplicate_of") is None
               and t.datetime_start and t.datetime_start >= since)


def owner() -> dict[str, Any]:
    me = psutil.Process()
    return {"host": socket.gethostname(), "pid": me.pid, "create_time": me.create_time()}


def owner_alive(owner: dict[str, Any] | None) -> bool:
    if not owner or owner.get("host") != socket.gethostname():
        return True  # another host's trial: not ours to judge
    try:
        return abs(psutil.Process(owner["pid"]).create_time() - owner["create_time"]) < 0.01
    except psutil.Error:
        return False


def interrupt(study, trial_number: int, trial_id: int, params: dict[str, Any], run_id: str | None,
               tracker: MlflowTracker | None) -> None:
    """Mark a trial interrupted (FAIL + tag) and enqueue its parameters so the next run measures them."""
    study._storage.set_trial_user_attr(trial_id, "interrupted", True)
    study._storage.set_trial_user_attr(trial_id, "fail_reason", "interrupted")
    study.tell(trial_number, state=optuna.trial.TrialState.FAIL)
    study.enqueue_trial(params, user_attrs={"rerun_of": trial_number}, skip_if_exists=False)
    if run_id and tracker is not None:
        with contextlib.suppress(TrackingError):  # a broken store: fail_open_runs() tries again at the end
            tracker.mark_interrupted(run_id)


def recover_interrupted(study, tracker: MlflowTracker) -> None:
    for t in study.get_trials(deepcopy=False, states=[optuna.trial.TrialState.RUNNING]):
        if not owner_alive(t.user_attrs.get("owner")):
            interrupt(study, t.number, t._trial_id, t.params, t.user_attrs.get("mlflow_run_id"), tracker)


def ask_batch(study, space: SpaceConfig, size: int, warm: list[ServerConfig]) -> list[tuple[Any, dict]]:
    """Ask `size` trials at once and order them so equal server parts run back to back, those of `warm` engines
    (running, then parked) first: only client knobs change between neighbours, so the engine is reused."""
    batch: list[tuple[Any, dict]] = []
    try:
        for _ in range(size):
            trial = study.ask()
            trial.set_user_attr("owner", owner())
            batch.append((trial, suggested(study, trial, space)))
    except BaseException:
        for t, _ in batch:
            interrupt(study, t.number, t._trial_id, t.params, None, None)
        raise

    def key(item):
        server = split_values(item[1]).server
        rank = warm.index(server) if server in warm else len(warm)
        return (rank, json.dumps(server.model_dump(), sort_keys=True, default=str))

    return sorted(batch, key=key)


def suggested(study, trial, space: SpaceConfig) -> dict[str, Any]:
    """The trial's knob values; a sampler failure fails the asked trial instead of leaving it RUNNING."""
    try:
        return suggest(trial, space)
    except BaseException as exc:
        trial.set_user_attr("fail_reason", "internal_error")
        trial.set_user_attr("fail_message", scrub(f"sampling failed: {type(exc).__name__}: {exc}")[:1000])
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
        raise
