"""Opening a search: the options resolved against the space, every input checked, the sampler built, the
stores probed and opened, the study created or resumed (its interrupted trials recovered), and the MLflow parent
run (re)opened, all before the first trial. Anything that fails here fails in one line, leaving nothing RUNNING."""

from __future__ import annotations

import random
import re
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna

from autotune import __version__
from autotune.config import STUDY_NAME, SpaceConfig, WorkloadConfig
from autotune.engines import EngineRegistry
from autotune.errors import ConfigError
from autotune.samplers import grid_size, make_sampler
from autotune.search.noise_prior import adopt
from autotune.search.study_state import recover_interrupted
from autotune.search.trial import TrialInputs
from autotune.secrets import scrub
from autotune.stores import contention, default_mlflow_uri, default_storage, open_storage, probe_dir
from autotune.tracking import MlflowTracker, probe_store, reproduce_command


@dataclass
class Session:
    """One `search` run's resolved settings and open stores."""

    space: SpaceConfig
    workload: WorkloadConfig
    wl_file: Path
    inputs: TrialInputs
    n_trials: int
    sampler_name: str
    seed: int
    max_failures: int
    study_name: str
    run_dir: Path
    storage: str
    mlflow_uri: str
    sampler: Any = None
    study: Any = None
    tracker: MlflowTracker | None = None

    @property
    def study_dir(self) -> Path:
        return self.run_dir / self.study_name


def resolve(opts, space: SpaceConfig, workload: WorkloadConfig, wl_file: Path, inputs: TrialInputs) -> Session:
    """The command line over the space's `search:` defaults, checked; the sampler built for them."""
    n_trials = opts.n_trials or space.search.n_trials
    sampler = opts.sampler or space.search.sampler
    if sampler == "grid":  # brute force ends when the grid is covered
        n_trials = min(n_trials, _checked(lambda: grid_size(space), str(opts.space_file), sampler))
    seed = space.search.seed if opts.seed is None else opts.seed
    study_name = opts.study_name or space.name
    if not re.fullmatch(STUDY_NAME, study_name):  # it names a folder under the run dir and an MLflow experiment
        raise ConfigError("--study-name", "", "must be letters, digits, `.`, `_` or `-` (at most 100, no `/`)",
                          study_name)
    run_dir = opts.run_dir.resolve()
    session = Session(
        space=space, workload=workload, wl_file=wl_file, inputs=inputs, n_trials=n_trials, sampler_name=sampler,
        seed=seed, max_failures=space.search.max_failures if opts.max_failures is None else opts.max_failures,
        study_name=study_name, run_dir=run_dir, storage=opts.storage or default_storage(run_dir),
        mlflow_uri=opts.mlflow_uri or default_mlflow_uri(run_dir))
    session.sampler = _checked(lambda: make_sampler(sampler, seed, n_trials, space), str(opts.space_file), sampler)
    return session


def open_stores(s: Session, opts) -> tuple[EngineRegistry, list[int]]:
    """Probe, then open: the run dir and the MLflow store must be writable before a study can be orphaned. Engines
    a killed run left behind are reaped before the parent run opens (nothing in between may leave it RUNNING).
    Returns the engine registry and the reaped process groups."""
    probe_dir(s.run_dir, "--run-dir", str(opts.run_dir))
    probe_store(s.mlflow_uri, "--mlflow-uri" if opts.mlflow_uri else "--run-dir")
    registry = EngineRegistry(s.run_dir / "engines")
    reaped = registry.reap_orphans()
    optuna_storage = open_storage(s.storage, "--storage" if opts.storage else "--run-dir")
    s.study = _open_study(s.study_name, optuna_storage, s.storage, s.space, s.sampler)
    local = s.mlflow_uri.startswith(("sqlite:", "file:")) or "://" not in s.mlflow_uri
    s.tracker = MlflowTracker(s.mlflow_uri, s.study_name, artifact_root=s.run_dir / "mlartifacts" if local else None)
    return registry, reaped


def prepare_study(s: Session, opts) -> None:
    """What export, nightly and the MLflow description need; interrupted trials recovered; the warm start."""
    study, tracker = s.study, s.tracker
    try:
        tracker.log_study_params({"space": str(opts.space_file), "workload": str(s.wl_file), "sampler": s.sampler_name,
                                  "seed": s.seed, "autotune_version": __version__, "hardware": s.space.hardware.name,
                                  "usd_per_hour": s.space.hardware.usd_per_hour})
        for key, value in (("space_file", str(Path(opts.space_file).resolve())), ("workload_file", str(s.wl_file)),
                           ("run_dir", str(s.run_dir)), ("mlflow_uri", s.mlflow_uri)):
            study.set_user_attr(key, value)  # what `autotune export` / `nightly` need to rebuild the configs
        study.set_user_attr("reproduce", reproduce_command({  # the parent run's description shows it
            "--space": Path(opts.space_file).resolve(), "--workload": s.wl_file, "--study-name": s.study_name,
            "--sampler": s.sampler_name, "--n-trials": s.n_trials, "--seed": s.seed,
            "--max-failures": s.max_failures, "--timeout": opts.timeout_s, "--run-dir": s.run_dir,
            "--storage": opts.storage, "--mlflow-uri": opts.mlflow_uri, "--confirm": opts.confirm or None}))
        if "noise_prior" not in study.user_attrs and \
                (prior := adopt(s.run_dir, s.workload.name, level_s=s.workload.capacity.level_s)) is not None:
            study.set_user_attr("noise_prior", prior)  # the host's launch noise (autotune.search.noise_prior)
        recover_interrupted(study, tracker)
        tracker.repair_runs({t.user_attrs["mlflow_run_id"]: ("FINISHED" if t.state.name == "COMPLETE" else "FAILED",
                                                            t.user_attrs.get("metrics", {}))
                             for t in study.trials if t.state.is_finished() and t.user_attrs.get("mlflow_run_id")})
        if not study.trials:  # warm start: a new study measures the enqueued configs first
            for params in s.space.search.enqueue:
                study.enqueue_trial({k: v for k, v in params.items() if s.space.knobs[k].value is None})
    except BaseException:
        tracker.fail_open_runs()  # the parent was (re)opened RUNNING: it must not stay so
        raise


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


def _checked(fn, file: str, sampler: str):
    """A sampler that cannot work with this space is a config error (one line), not a traceback."""
    try:
        return fn()
    except ValueError as exc:
        raise ConfigError(file, "search.sampler", str(exc), sampler) from None
