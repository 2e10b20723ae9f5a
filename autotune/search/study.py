"""The search loop: ask -> launch -> load -> measure -> tell -> track, with failure budget and resume.

Every trial is told to the persistent Optuna storage before the next one starts, so a crash loses at most
the running trial; that trial is marked `interrupted` (here on Ctrl-C/SIGTERM, or by the next run after a
`kill -9`) and its parameters are enqueued so the rerun measures it again. Opening the search is
search/session.py, one trial search/one_trial.py, the study's bookkeeping search/study_state.py.
"""

from __future__ import annotations

import datetime
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import optuna

from autotune.config import SpaceConfig, WorkloadConfig, load_space, load_workload, workload_path
from autotune.engines import EngineKeeper, keeper_for
from autotune.errors import ConfigError, TrackingError
from autotune.measure import over_budget_warning
from autotune.samplers import MAX_BATCH, ask_size
from autotune.search.front import front_rows, update_front
from autotune.search.inputs import check_models, trial_inputs
from autotune.search.noise_window import measure_noise, noise_windows_due
from autotune.search.one_trial import run_one_trial, warn
from autotune.search.repeats import REPEAT_STREAK, enqueue_unmeasured, repeat_proposals
from autotune.search.session import Session, open_stores, prepare_study, resolve
from autotune.search.study_state import ask_batch, failures_since, finished_trials, interrupt, running_elsewhere

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
    inputs = trial_inputs(space, workload, wl_file)  # every input checked before any study or run exists
    s = resolve(opts, space, workload, wl_file, inputs)
    warn(reporter, "eval_budget", over_budget_warning(workload, len(inputs.eval_ids)))
    registry, reaped = open_stores(s, opts)
    prepare_study(s, opts)
    keeper = keeper_for(space.engine, registry, on_wait=lambda secs: reporter.phase(f"launching ({secs:.0f}s)"),
                        endpoints=space.endpoints)
    s.tracker.objectives = [(o.metric, o.direction) for o in space.objectives]
    reporter.search_started(s.study_name, s.n_trials, finished_trials(s.study))
    previous = {sig: signal.signal(sig, _raise_interrupt) for sig in (signal.SIGTERM, signal.SIGHUP)}
    status = "FINISHED"
    try:
        stopped = _search_loop(s, opts, keeper, reporter)
        if opts.confirm and not stopped.startswith("failure budget"):
            from autotune.search.confirm import audit_screening, confirm_front

            confirm_front(s.study, space, inputs, keeper, s.tracker, s.study_dir, reporter, opts.confirm)
            audit_screening(s.study, space, inputs, keeper, s.study_dir, reporter)
        update_front(s.study, space, s.tracker, reporter)  # the last worker to finish writes the complete front
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    except BaseException:  # every exit path leaves the parent run in a final state
        status = "FAILED"
        raise
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        _close(s, keeper, status)
    return _summary(s, stopped, reaped)


def _search_loop(s: Session, opts: SearchOptions, keeper: EngineKeeper, reporter: Reporter) -> str:
    """Trials until n_trials (every worker's), the timeout, the failure budget or an exhausted space; the reason."""
    started, session_start = time.monotonic(), datetime.datetime.now()  # Optuna stores naive local times
    study, space = s.study, s.space

    def stop_now() -> str | None:  # checked before every trial, batches included
        if opts.timeout_s is not None and time.monotonic() - started > opts.timeout_s:
            return "timeout"
        failures = failures_since(study, session_start)  # every worker's, so the budget is shared
        if failures > s.max_failures:
            return f"failure budget exhausted ({failures} failed trials > max_failures {s.max_failures})"
        return None

    repeats = 0  # re-proposals of measured configs in a row
    # other workers' running trials count too: N workers sharing a study stop at n_trials, not n_trials + N
    while finished_trials(study) + running_elsewhere(study) < s.n_trials:
        if reason := stop_now():
            return reason
        # a sampler's independent draws (random start, one generation) are asked at once: grouped by server part
        # they cost one launch per part; model-guided asks come `search.batch` at a time (batch 1: one at a time)
        size = min(ask_size(s.sampler, study, space.search.batch, s.n_trials), MAX_BATCH,
                   s.n_trials - finished_trials(study) - running_elsewhere(study))
        pending = ask_batch(study, space, size, keeper.warm()) if size > 1 else [None]
        try:
            while pending:  # a trial leaves `pending` before it starts: run_one_trial makes it final itself
                if reason := stop_now():
                    raise _Stop(reason)
                outcome = run_one_trial(study, s.inputs, keeper, s.tracker, s.study_dir, reporter, pending.pop(0))
                repeats = repeats + 1 if outcome == "repeat" else 0
                if outcome == "full" and noise_windows_due(study, space):  # early: every front after has noise
                    measure_noise(study, space, s.inputs, keeper, s.tracker, s.study_dir, reporter)
                if outcome != "repeat":
                    update_front(study, space, s.tracker, reporter)
        except BaseException as exc:  # asked but never started: re-enqueued like the interrupted one
            for trial, _ in [p for p in pending if p is not None]:
                interrupt(study, trial.number, trial._trial_id, trial.params, None, s.tracker)
            if not isinstance(exc, _Stop):
                raise
            return str(exc)
        if repeats >= REPEAT_STREAK:  # the sampler keeps proposing measured configs: draw an unmeasured one
            if not enqueue_unmeasured(study, space, s.seed, repeats):
                return (f"every config the space allows is measured or failed for its own reasons ({repeats} "
                        "re-proposals in a row)")
            repeats = 0
    return "n_trials reached"


def _close(s: Session, keeper: EngineKeeper, status: str) -> None:
    """No engine outlives the search (the last one kept for reuse, the parked ones); the parent run ends."""
    keeper.close_all()
    try:
        s.tracker.log_parent_metrics({"engine_launches": keeper.launches, "engine_reuses": keeper.reuses,
                                      "engine_thaws": keeper.thaws,
                                      "repeat_proposals": float(repeat_proposals(s.study))})
        s.tracker.end(status)
    except TrackingError:
        if status == "FINISHED":
            raise  # the store failed now; if it failed earlier, that error is already on its way
    finally:
        if status != "FINISHED":
            s.tracker.fail_open_runs(status)


def _summary(s: Session, stopped: str, reaped: list[int]) -> SearchSummary:
    states = optuna.trial.TrialState
    trials = s.study.trials
    complete = [t for t in trials if t.state in (states.COMPLETE, states.PRUNED)
                and t.user_attrs.get("duplicate_of") is None]
    failed = [t for t in trials if t.state == states.FAIL
              and not t.user_attrs.get("interrupted") and t.user_attrs.get("duplicate_of") is None]
    front = front_rows(s.study, s.space, judge=True)[1]
    return SearchSummary(
        study=s.study_name, storage=s.storage, mlflow_uri=s.mlflow_uri, parent_run_url=s.tracker.run_url(),
        trials_complete=len(complete), trials_failed=len(failed), front=front,
        objectives=s.tracker.objectives, stopped_because=stopped, reaped_engines=reaped,
        compare_url=s.tracker.compare_url(front))


class _Stop(Exception):
    """The timeout or the failure budget ended the search inside a batch."""


def _raise_interrupt(signum, frame):  # SIGTERM and SIGHUP take the same cleanup path as Ctrl-C
    raise KeyboardInterrupt
