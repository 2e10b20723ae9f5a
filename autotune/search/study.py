"""The search loop: ask -> launch -> load -> measure -> tell -> track, with failure budget and resume.

Every trial is told to the persistent Optuna storage before the next one starts, so a crash loses at most
the running trial; that trial is marked `interrupted` (here on Ctrl-C/SIGTERM, or by the next run after a
`kill -9`) and its parameters are enqueued so the rerun measures it again.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import random
import re
import signal
import socket
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import optuna
import psutil

from autotune import __version__
from autotune.config.knobs import ServerConfig, split_values
from autotune.config.space import STUDY_NAME, SpaceConfig, load_space, workload_path
from autotune.config.workload import WorkloadConfig, load_workload
from autotune.engines.keeper import EngineKeeper
from autotune.engines.process import EngineRegistry
from autotune.engines.vllm import VLLMEngine
from autotune.errors import ConfigError, EngineLaunchError, TrackingError, TrialError, TrialRejected
from autotune.measure.eval_budget import costly_pass_warning, over_budget_warning
from autotune.objectives import constraint_names, evaluate, knob_metrics
from autotune.samplers.optuna_sampler import MAX_BATCH, ask_size, grid_size, make_sampler, set_constraints, suggest
from autotune.search.config_points import config_key
from autotune.search.front import front_rows, update_front
from autotune.search.inputs import check_models, trial_inputs
from autotune.search.repeats import (
    REPEAT_STREAK,
    enqueue_unmeasured,
    failed_before,
    known_launch_failure,
    measured_before,
    repeat_proposals,
    tell_failed_repeat,
    tell_repeat,
)
from autotune.search.screening import measure
from autotune.search.trial import TrialInputs
from autotune.secrets import scrub
from autotune.stores import (
    contention,
    default_mlflow_uri,
    default_storage,
    open_storage,
    probe_dir,
)
from autotune.tracking.mlflow_tracker import MlflowTracker, probe_store
from autotune.tracking.views import reproduce_command

optuna.logging.set_verbosity(optuna.logging.WARNING)



class Reporter(Protocol):
    def search_started(self, study: str, target: int, done: int) -> None: ...
    def trial_started(self, number: int, values: dict[str, Any]) -> None: ...
    def phase(self, name: str) -> None: ...
    def trial_finished(self, number: int, metrics: dict[str, float] | None, error: str | None) -> None: ...
    def front(self, rows: list[dict[str, Any]], objectives: list[tuple[str, str]]) -> None: ...


@dataclass
class SearchOptions:
    space_file: Path
    workload_file: Path | None = None
    n_trials: int | None = None
    timeout_s: float | None = None
    seed: int | None = None
    study_name: str | None = None
    storage: str | None = None
    run_dir: Path = Path("runs")
    mlflow_uri: str | None = None
    max_failures: int | None = None
    sampler: str | None = None
    confirm: int = 0  # re-measure every front member this many times at the end (noise)


@dataclass
class SearchSummary:
    study: str
    storage: str
    mlflow_uri: str
    parent_run_url: str
    trials_complete: int
    trials_failed: int
    front: list[dict[str, Any]] = field(default_factory=list)
    objectives: list[tuple[str, str]] = field(default_factory=list)
    stopped_because: str = ""
    reaped_engines: list[int] = field(default_factory=list)
    compare_url: str = ""  # MLflow's compare view on the front's members


def load_inputs(opts: SearchOptions) -> tuple[SpaceConfig, WorkloadConfig, Path]:
    space = load_space(opts.space_file)
    wl_file = opts.workload_file or workload_path(space, opts.space_file)
    if wl_file is None:
        raise ConfigError(str(opts.space_file), "workload", "no workload: set `workload:` or pass --workload",
                          show_value=False)
    workload = load_workload(wl_file)
    check_models(space, str(opts.space_file))
    return space, workload, Path(wl_file)


def run_search(opts: SearchOptions, reporter: Reporter) -> SearchSummary:
    space, workload, wl_file = load_inputs(opts)
    n_trials = opts.n_trials or space.search.n_trials
    sampler = opts.sampler or space.search.sampler
    if sampler == "grid":  # brute force ends when the grid is covered
        n_trials = min(n_trials, _checked(lambda: grid_size(space), str(opts.space_file), sampler))
    seed = space.search.seed if opts.seed is None else opts.seed
    max_failures = space.search.max_failures if opts.max_failures is None else opts.max_failures
    study_name = opts.study_name or space.name
    if not re.fullmatch(STUDY_NAME, study_name):  # it names a folder under the run dir and an MLflow experiment
        raise ConfigError("--study-name", "", "must be letters, digits, `.`, `_` or `-` (at most 100, no `/`)",
                          study_name)
    inputs = trial_inputs(space, workload, wl_file)  # every input checked before any study or run exists
    _warn(reporter, "eval_budget", over_budget_warning(workload, len(inputs.eval_ids)))
    chosen = _checked(lambda: make_sampler(sampler, seed, n_trials, space), str(opts.space_file), sampler)
    run_dir = opts.run_dir.resolve()
    probe_dir(run_dir, "--run-dir", str(opts.run_dir))
    storage = opts.storage or default_storage(run_dir)
    mlflow_uri = opts.mlflow_uri or default_mlflow_uri(run_dir)
    probe_store(mlflow_uri, "--mlflow-uri" if opts.mlflow_uri else "--run-dir")  # before a study can be orphaned
    optuna_storage = open_storage(storage, "--storage" if opts.storage else "--run-dir")

    registry = EngineRegistry(run_dir / "engines")
    reaped = registry.reap_orphans()
    study = _open_study(study_name, optuna_storage, storage, space, chosen)
    tracker = MlflowTracker(mlflow_uri, study_name, artifact_root=run_dir / "mlartifacts"
                            if mlflow_uri.startswith(("sqlite:", "file:")) or "://" not in mlflow_uri else None)
    try:
        tracker.log_study_params({"space": str(opts.space_file), "workload": str(wl_file), "sampler": sampler,
                                  "seed": seed, "autotune_version": __version__,
                                  "hardware": space.hardware.name, "usd_per_hour": space.hardware.usd_per_hour})
        for key, value in (("space_file", str(Path(opts.space_file).resolve())), ("workload_file", str(wl_file)),
                           ("run_dir", str(run_dir)), ("mlflow_uri", mlflow_uri)):
            study.set_user_attr(key, value)  # what `autotune export` / `nightly` need to rebuild the configs
        study.set_user_attr("reproduce", reproduce_command({  # the parent run's description shows it
            "--space": Path(opts.space_file).resolve(), "--workload": wl_file, "--study-name": study_name,
            "--sampler": sampler, "--n-trials": n_trials, "--seed": seed, "--max-failures": max_failures,
            "--timeout": opts.timeout_s, "--run-dir": run_dir, "--storage": opts.storage,
            "--mlflow-uri": opts.mlflow_uri, "--confirm": opts.confirm or None}))
        _recover_interrupted(study, tracker)
        tracker.repair_runs({t.user_attrs["mlflow_run_id"]: ("FINISHED" if t.state.name == "COMPLETE" else "FAILED",
                                                            t.user_attrs.get("metrics", {}))
                             for t in study.trials if t.state.is_finished() and t.user_attrs.get("mlflow_run_id")})
        if not study.trials:  # warm start: a new study measures the enqueued configs first
            for params in space.search.enqueue:
                study.enqueue_trial({k: v for k, v in params.items() if space.knobs[k].value is None})
    except BaseException:
        tracker.fail_open_runs()  # the parent was (re)opened RUNNING: it must not stay so
        raise

    engine = VLLMEngine(space.engine, registry, on_wait=lambda s: reporter.phase(f"launching ({s:.0f}s)"))
    keeper = EngineKeeper(engine, space.engine.park)
    objectives = [(o.metric, o.direction) for o in space.objectives]
    tracker.objectives = objectives

    started = time.monotonic()
    session_start = datetime.datetime.now()  # Optuna stores naive local times
    stopped = "n_trials reached"
    reporter.search_started(study_name, n_trials, finished_trials(study))
    repeats = 0  # re-proposals of measured configs in a row
    previous = {sig: signal.signal(sig, _raise_interrupt) for sig in (signal.SIGTERM, signal.SIGHUP)}
    status = "FINISHED"
    try:
        # other workers' running trials count too: N workers sharing a study stop at n_trials, not n_trials + N
        def stop_now() -> str | None:  # checked before every trial, batches included
            if opts.timeout_s is not None and time.monotonic() - started > opts.timeout_s:
                return "timeout"
            failures = _failures_since(study, session_start)  # every worker's, so the budget is shared
            if failures > max_failures:
                return f"failure budget exhausted ({failures} failed trials > max_failures {max_failures})"
            return None

        while finished_trials(study) + _running_elsewhere(study) < n_trials:
            if reason := stop_now():
                stopped = reason
                break
            # a sampler's independent draws (random start, one generation) are asked at once: grouped by server
            # part they cost one launch per part; model-guided asks come `search.batch` at a time (batch 1: one
            # trial at a time, in the sampler's order)
            size = min(ask_size(chosen, study, space.search.batch, n_trials), MAX_BATCH,
                       n_trials - finished_trials(study) - _running_elsewhere(study))
            pending = _ask_batch(study, space, size, keeper.warm()) if size > 1 else [None]
            try:
                while pending:  # a trial leaves `pending` before it starts: _one_trial makes it final itself
                    if reason := stop_now():
                        raise _Stop(reason)
                    outcome = _one_trial(study, inputs, keeper, tracker, run_dir / study_name, reporter,
                                         pending.pop(0))
                    repeats = repeats + 1 if outcome == "repeat" else 0
                    if outcome != "repeat":
                        update_front(study, space, tracker, reporter)
            except BaseException as exc:  # asked but never started: re-enqueued like the interrupted one
                for trial, _ in [p for p in pending if p is not None]:
                    _interrupt(study, trial.number, trial._trial_id, trial.params, None, tracker)
                if not isinstance(exc, _Stop):
                    raise
                stopped = str(exc)
                break
            if repeats >= REPEAT_STREAK:  # the sampler keeps proposing measured configs: draw an unmeasured one
                if not enqueue_unmeasured(study, space, seed, repeats):
                    stopped = (f"every config the space allows is measured or failed for its own reasons ({repeats} "
                               "re-proposals in a row)")
                    break
                repeats = 0
        if opts.confirm and not stopped.startswith("failure budget"):
            from autotune.search.confirm import audit_screening, confirm_front

            confirm_front(study, space, inputs, keeper, tracker, run_dir / study_name, reporter, opts.confirm)
            audit_screening(study, space, inputs, keeper, run_dir / study_name, reporter)
        update_front(study, space, tracker, reporter)  # the last worker to finish writes the complete front
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    except BaseException:  # every exit path leaves the parent run in a final state
        status = "FAILED"
        raise
    finally:
        keeper.close_all()  # the last engine (kept for reuse) and the parked ones never outlive the search
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        try:
            tracker.log_parent_metrics({"engine_launches": keeper.launches, "engine_reuses": keeper.reuses,
                                        "engine_thaws": keeper.thaws,
                                        "repeat_proposals": float(repeat_proposals(study))})
            tracker.end(status)
        except TrackingError:
            if status == "FINISHED":
                raise  # the store failed now; if it failed earlier, that error is already on its way
        finally:
            if status != "FINISHED":
                tracker.fail_open_runs(status)

    complete = [t for t in study.trials if t.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
                and t.user_attrs.get("duplicate_of") is None]
    failed = [t for t in study.trials if t.state == optuna.trial.TrialState.FAIL
              and not t.user_attrs.get("interrupted") and t.user_attrs.get("duplicate_of") is None]
    front = front_rows(study, space, judge=True)[1]
    return SearchSummary(
        study=study_name, storage=storage, mlflow_uri=mlflow_uri, parent_run_url=tracker.run_url(),
        trials_complete=len(complete), trials_failed=len(failed), front=front,
        objectives=objectives, stopped_because=stopped, reaped_engines=reaped, compare_url=tracker.compare_url(front),
    )


class _Stop(Exception):
    """The timeout or the failure budget ended the search inside a batch."""


def _raise_interrupt(signum, frame):  # SIGTERM and SIGHUP take the same cleanup path as Ctrl-C
    raise KeyboardInterrupt


def _open_study(name: str, optuna_storage, storage: str, space: SpaceConfig, chosen):
    directions = [o.direction for o in space.objectives]
    for attempt in range(6):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                study = optuna.create_study(study_name=name, storage=optuna_storage, directions=directions,
                                            sampler=chosen, load_if_exists=True)
            break
        except Exception as exc:  # workers starting together race to create the schema / the study: retry
            from sqlalchemy.exc import SQLAlchemyError

            if not (isinstance(exc, optuna.exceptions.DuplicatedStudyError)
                    or isinstance(exc, SQLAlchemyError) and contention(exc)):
                raise
            if attempt == 5:
                raise ConfigError(scrub(storage), f"study {name}", f"cannot be created ({type(exc).__name__}: "
                                  f"{scrub(str(exc).splitlines()[0])[:200]})", show_value=False) from None
            time.sleep(0.5 + random.random())
    got = [d.name.lower() for d in study.directions]
    if got != directions:
        raise ConfigError(scrub(storage), f"study {name}", f"exists with directions {got}; the space asks for "
                          f"{directions}. Use another --study-name", show_value=False)
    return study


def _checked(fn, file: str, sampler: str):
    """A sampler that cannot work with this space is a config error (one line), not a traceback."""
    try:
        return fn()
    except ValueError as exc:
        raise ConfigError(file, "search.sampler", str(exc), sampler) from None


def finished_trials(study) -> int:
    """Trials that measured something (complete, screened out, or failed); re-proposals of a measured config and
    interrupted trials do not count."""
    states = optuna.trial.TrialState
    return sum(1 for t in study.trials if t.user_attrs.get("duplicate_of") is None and (
        t.state in (states.COMPLETE, states.PRUNED)
        or (t.state == states.FAIL and not t.user_attrs.get("interrupted"))))


def _running_elsewhere(study) -> int:
    """Trials other live workers are measuring now (they will finish and count)."""
    me = os.getpid()
    return sum(1 for t in study.get_trials(deepcopy=False, states=[optuna.trial.TrialState.RUNNING])
               if t.user_attrs.get("owner", {}).get("pid") != me and _owner_alive(t.user_attrs.get("owner")))


def _failures_since(study, since: datetime.datetime) -> int:
    return sum(1 for t in study.get_trials(deepcopy=False, states=[optuna.trial.TrialState.FAIL])
               if not t.user_attrs.get("interrupted") and t.user_attrs.get("duplicate_of") is None
               and t.datetime_start and t.datetime_start >= since)


def _owner() -> dict[str, Any]:
    me = psutil.Process()
    return {"host": socket.gethostname(), "pid": me.pid, "create_time": me.create_time()}


def _owner_alive(owner: dict[str, Any] | None) -> bool:
    if not owner or owner.get("host") != socket.gethostname():
        return True  # another host's trial: not ours to judge
    try:
        return abs(psutil.Process(owner["pid"]).create_time() - owner["create_time"]) < 0.01
    except psutil.Error:
        return False


def _interrupt(study, trial_number: int, trial_id: int, params: dict[str, Any], run_id: str | None,
               tracker: MlflowTracker | None) -> None:
    """Mark a trial interrupted (FAIL + tag) and enqueue its parameters so the next run measures them."""
    study._storage.set_trial_user_attr(trial_id, "interrupted", True)
    study._storage.set_trial_user_attr(trial_id, "fail_reason", "interrupted")
    study.tell(trial_number, state=optuna.trial.TrialState.FAIL)
    study.enqueue_trial(params, user_attrs={"rerun_of": trial_number}, skip_if_exists=False)
    if run_id and tracker is not None:
        with contextlib.suppress(TrackingError):  # a broken store: fail_open_runs() tries again at the end
            tracker.mark_interrupted(run_id)


def _recover_interrupted(study, tracker: MlflowTracker) -> None:
    for t in study.get_trials(deepcopy=False, states=[optuna.trial.TrialState.RUNNING]):
        if not _owner_alive(t.user_attrs.get("owner")):
            _interrupt(study, t.number, t._trial_id, t.params, t.user_attrs.get("mlflow_run_id"), tracker)


def _ask_batch(study, space: SpaceConfig, size: int, warm: list[ServerConfig]) -> list[tuple[Any, dict]]:
    """Ask `size` trials at once and order them so equal server parts run back to back, those of `warm` engines
    (running, then parked) first: only client knobs change between neighbours, so the engine is reused."""
    batch: list[tuple[Any, dict]] = []
    try:
        for _ in range(size):
            trial = study.ask()
            trial.set_user_attr("owner", _owner())
            batch.append((trial, _suggested(study, trial, space)))
    except BaseException:
        for t, _ in batch:
            _interrupt(study, t.number, t._trial_id, t.params, None, None)
        raise

    def key(item):
        server = split_values(item[1]).server
        rank = warm.index(server) if server in warm else len(warm)
        return (rank, json.dumps(server.model_dump(), sort_keys=True, default=str))

    return sorted(batch, key=key)


def _suggested(study, trial, space: SpaceConfig) -> dict[str, Any]:
    """The trial's knob values; a sampler failure fails the asked trial instead of leaving it RUNNING."""
    try:
        return suggest(trial, space)
    except BaseException as exc:
        trial.set_user_attr("fail_reason", "internal_error")
        trial.set_user_attr("fail_message", scrub(f"sampling failed: {type(exc).__name__}: {exc}")[:1000])
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
        raise


def _one_trial(study, inputs: TrialInputs, keeper: EngineKeeper, tracker, study_dir: Path,
               reporter: Reporter, asked: tuple[Any, dict] | None = None) -> str:
    """One asked trial made final: "full" or "screen" (measured), "failed", or "repeat" (a measured config)."""
    space = inputs.space
    if asked is None:
        trial = study.ask()
        values = _suggested(study, trial, space)
    else:
        trial, values = asked
    config = split_values(values)
    trial.set_user_attr("owner", _owner())
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
    try:
        run_id = tracker.start_trial(trial.number, config.flat())  # every knob, sampled or default
    except BaseException:  # the store broke before the trial began: it is not left RUNNING in Optuna
        _interrupt(study, trial.number, trial._trial_id, trial.params, None, tracker)
        raise
    trial.set_user_attr("mlflow_run_id", run_id)
    reporter.trial_started(trial.number, values)
    trial_dir = study_dir / f"trial-{trial.number:04d}"
    started = time.monotonic()
    trial.set_user_attr("began", time.time())  # datetime_start is when it was asked (a batch is asked at once)
    try:  # from here every exit leaves the trial final: told, failed or interrupted
        known = known_launch_failure(study, config.server)
        if known is not None:  # the same engine config already failed to start: do not pay for it again
            raise TrialRejected(f"server part equals failed trial {known.number} ({known.user_attrs['fail_reason']})"
                                "; not launched again", "known_failure")
        result, fidelity, screen = measure(study, config, inputs, keeper, trial_dir, reporter)
        ev = _record(study, trial, result, values, space, fidelity, screen, started)
    except TrialError as err:
        _fail(study, trial, run_id, err.reason, scrub(str(err)), isinstance(err, EngineLaunchError), keeper,
              tracker, trial_dir, reporter)
        return "failed"
    except KeyboardInterrupt:
        _interrupt(study, trial.number, trial._trial_id, trial.params, run_id, tracker)
        raise
    except Exception as exc:  # our bug or the host's (a full disk...): recorded as a failed trial, then stop
        _fail(study, trial, run_id, "internal_error", scrub(f"{type(exc).__name__}: {exc}"), False, keeper,
              tracker, trial_dir, reporter)
        raise
    from autotune.tracking.traces import trial_traces  # a sample of the window's tasks as MLflow traces

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
    reporter.trial_finished(trial.number, result.metrics, None)
    _warn(reporter, "eval_cost", costly_pass_warning(result.metrics))
    return fidelity


def _warn(reporter: Reporter, key: str, text: str | None) -> None:
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
          tracker: MlflowTracker, trial_dir: Path, reporter: Reporter) -> None:
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
