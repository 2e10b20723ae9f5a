"""One asked trial, made final whatever happens: a re-proposal told its config's estimate, a known failure told
again, or a measurement (screened or full) recorded in Optuna first, then MLflow; a failure is a FAILED trial
with its reason, Ctrl-C an interrupted one."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import optuna

from autotune.config import SpaceConfig, split_values
from autotune.engines import EngineKeeper
from autotune.errors import EngineLaunchError, TrialError
from autotune.measure import costly_pass_warning
from autotune.objectives import constraint_names, evaluate, knob_metrics
from autotune.samplers import set_constraints
from autotune.search.config_points import capacity_priors, config_key
from autotune.search.repeats import (
    failed_before,
    known_launch_failure,
    measured_before,
    tell_failed_repeat,
    tell_repeat,
)
from autotune.search.screening import measure_screened
from autotune.search.study_state import interrupt, owner, suggested
from autotune.search.trial import TrialInputs
from autotune.secrets import scrub
from autotune.tracking import MlflowTracker


def run_one_trial(study, inputs: TrialInputs, keeper: EngineKeeper, tracker, study_dir: Path,
               reporter, asked: tuple[Any, dict] | None = None) -> str:
    """One asked trial made final: "full" or "screen" (measured), "failed", or "repeat" (a measured config)."""
    space = inputs.space
    if asked is None:
        trial = study.ask()
        values = suggested(study, trial, space)
    else:
        trial, values = asked
    config = split_values(values)
    trial.set_user_attr("owner", owner())
    trial.set_user_attr("server", config.server.model_dump(mode="json"))  # to recognise repeats of failed launches
    key = config_key(config)
    trial.set_user_attr("config_key", key)
    prior = measured_before(study, key, trial.number, space)
    if prior is not None:
        tell_repeat(study, trial, prior, key, space, reporter)
        return "repeat"
    if (failed := failed_before(study, key, trial.number, space)) is not None:
        tell_failed_repeat(study, trial, failed, reporter)
        return "repeat"
    # the engine already refused this server part (OOM, unsupported flags or dtype): the same failure, not launched
    # again, and like a re-proposal it costs neither a trial of n_trials nor the failure budget
    if (known := known_launch_failure(study, config.server)) is not None:
        tell_failed_repeat(study, trial, known, reporter, "server part")
        return "repeat"
    try:
        run_id = tracker.start_trial(trial.number, config.flat())  # every knob, sampled or default
    except BaseException:  # the store broke before the trial began: it is not left RUNNING in Optuna
        interrupt(study, trial.number, trial._trial_id, trial.params, None, tracker)
        raise
    trial.set_user_attr("mlflow_run_id", run_id)
    reporter.trial_started(trial.number, values)
    trial_dir = study_dir / f"trial-{trial.number:04d}"
    started = time.monotonic()
    trial.set_user_attr("began", time.time())  # datetime_start is when it was asked (a batch is asked at once)
    try:  # from here every exit leaves the trial final: told, failed or interrupted
        inputs = dataclasses.replace(inputs, capacity_priors=capacity_priors(study))
        result, fidelity, screen = measure_screened(study, config, inputs, keeper, trial_dir, reporter)
        ev = _record(study, trial, result, values, space, fidelity, screen, started)
    except TrialError as err:
        _fail(study, trial, run_id, err.reason, scrub(str(err)), isinstance(err, EngineLaunchError), keeper,
              tracker, trial_dir, reporter)
        return "failed"
    except KeyboardInterrupt:
        interrupt(study, trial.number, trial._trial_id, trial.params, run_id, tracker)
        raise
    except Exception as exc:  # our bug or the host's (a full disk...): recorded as a failed trial, then stop
        _fail(study, trial, run_id, "internal_error", scrub(f"{type(exc).__name__}: {exc}"), False, keeper,
              tracker, trial_dir, reporter)
        raise
    from autotune.tracking import trial_traces  # a sample of the window's tasks as MLflow traces

    trace_metrics, trace_tags = ({}, {}) if tracker.unresponsive else trial_traces(  # a dead store: no waits
        tracker.client, tracker.experiment_id, run_id, result.files.get("tasks.jsonl"), config.flat())
    result.metrics.update(trace_metrics)
    result.tags.update(trace_tags)
    tracker.finish_trial(run_id, result.metrics, result.files, {
        "autotune.state": "complete" if fidelity == "full" else "screened",
        "autotune.feasible": str(ev.feasible).lower(),
        "autotune.engine_version": result.engine_version, "autotune.engine_argv": json.dumps(result.argv),
        "autotune.violations": json.dumps(ev.violations), "autotune.dominant_node": result.dominant_node,
        "autotune.fidelity": fidelity, **result.tags,
    }, tables=result.tables)
    # the done line names why a capacity bracket stayed wider than asked (a tag, not a metric)
    stop = result.tags.get("autotune.capacity_stop")
    reporter.trial_finished(trial.number, {**result.metrics, "capacity_stop": stop}, None)
    warn(reporter, "eval_cost", costly_pass_warning(result.metrics))
    return fidelity


def warn(reporter, key: str, text: str | None) -> None:
    """A warning through the reporter's optional `warn` hook (shown once per key)."""
    if text and (warn := getattr(reporter, "warn", None)):
        warn(key, text)


def _record(study, trial, result, values: dict[str, Any], space: SpaceConfig, fidelity: str, screen, started: float):
    """Derived metrics, constraints and user attributes, then tell Optuna (the last step: the trial is final)."""
    result.metrics.update(knob_metrics(values, space))
    result.metrics["fidelity_s"] = result.metrics["measure_s"]
    trial.set_user_attr("fidelity", fidelity)
    if screen is not None:
        trial.set_user_attr("screen_metrics", {k: v for k, v in screen.items() if v == v and "." not in k})
    result.metrics["trial_wall_s"] = time.monotonic() - started
    result.metrics["measure_share"] = result.metrics["measure_s"] / result.metrics["trial_wall_s"]
    ev = evaluate(result.metrics, space.objectives, space.constraints)
    set_constraints(trial, constraint_names(space.constraints, result.metrics), ev.violations)
    trial.set_user_attr("feasible", ev.feasible)
    trial.set_user_attr("metrics", {k: v for k, v in result.metrics.items() if v == v})  # drop NaN
    trial.set_user_attr("engine_version", result.engine_version)
    trial.set_user_attr("item_scores", result.item_scores)  # paired quality comparisons between trials
    if result.tags.get("autotune.capacity_stop"):
        trial.set_user_attr("capacity_stop", result.tags["autotune.capacity_stop"])
    if "capacity_levels.json" in result.tables and fidelity == "full":  # the study's levels chart: full windows
        keep = ("rate", "tasks_per_s", "p95_task_ms", "passed", "attainment", "tokens_per_s_per_user", "valid")
        trial.set_user_attr("capacity_levels", [{k: r.get(k) for k in keep if r.get(k) == r.get(k)}
                                                for r in result.tables["capacity_levels.json"]])
    if fidelity == "screen":  # a short window is not a full value: the sampler sees a pruned trial, never its numbers
        study.tell(trial, state=optuna.trial.TrialState.PRUNED)
    else:
        study.tell(trial, ev.values)
    return ev


def _fail(study, trial, run_id: str, reason: str, message: str, launch_failure: bool, keeper: EngineKeeper,
          tracker: MlflowTracker, trial_dir: Path, reporter) -> None:
    """FAIL in Optuna first (the store of record), then the MLflow run; the message is already scrubbed."""
    trial.set_user_attr("fail_reason", reason)
    trial.set_user_attr("launch_failure", launch_failure)  # the engine itself refused
    trial.set_user_attr("fail_message", message[:1000])
    study.tell(trial, state=optuna.trial.TrialState.FAIL)
    log = keeper.handle.log_path if keeper.handle else trial_dir / "engine.log"
    files = {"engine.log": log, "resolved-config.json": trial_dir / "resolved-config.json"}
    tracker.finish_trial(run_id, {}, files, {"autotune.state": "failed", "autotune.fail_reason": reason,
                                             "autotune.fail_message": message[:4000]}, failed=True)
    reporter.trial_finished(trial.number, None, f"{reason}: {message}")
