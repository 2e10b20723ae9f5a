"""MLflow layout: one experiment per study, a parent run for the study, a child run per trial.

Children carry every knob (param), every measurement (metric), the artifacts and state/failure tags; the
parent carries the Pareto plot (PNG + interactive HTML) and the front table. Pareto membership is a tag
(`autotune.pareto`) re-written on every child whenever the front moves.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import random
import time
from pathlib import Path
from typing import Any

from autotune.errors import ConfigError, TrackingError
from autotune.secrets import contains_secret, install_log_scrubbing, redact, scrub, scrub_bytes, scrub_obj
from autotune.stores import local_path, one_line
from autotune.tracking.views import NOTE_LIMIT, compare_url, level_history, run_url, runs_table_url

RECOMMENDED = "autotune.recommended"
# the value MLflow's UI bundle (ExperimentKind.CUSTOM_MODEL_DEVELOPMENT) opens on the runs table for
EXPERIMENT_KIND, KIND_RUNS = "mlflow.experimentKind", "custom_model_development"
ROLE, STUDY, TRIAL, PARETO, STATE, REASON = (
    "autotune.role", "autotune.study", "autotune.trial", "autotune.pareto", "autotune.state", "autotune.fail_reason")
COMPARE = "autotune.compare_url"  # the parent's link to MLflow's compare view on the current front


class MlflowTracker:
    def __init__(self, uri: str, study: str, artifact_root: Path | None = None, create_parent: bool = True):
        _bound_mlflow_retries()
        from mlflow import MlflowClient

        from autotune.stores import check_mlflow_uri, contention

        check_mlflow_uri(uri)  # an unwritable local store fails now, in one line, not after minutes of retries
        self.uri = scrub(uri)
        self.study = study
        self._open: set[str] = set()  # trial runs started here and not yet terminated
        self._names: dict[str, str] = {}  # run id -> trial run name
        # the study's objectives: a finished trial's run name carries their values, so the runs table (whose
        # default columns show no metric) and every chart legend tell the trials apart at a glance
        self.objectives: list[tuple[str, str]] = []
        self.unresponsive = False
        for attempt in range(6):  # workers starting together race to create the store schema / the experiment
            try:
                self.client = MlflowClient(tracking_uri=uri)
                exp = self.client.get_experiment_by_name(study)
                if exp is None:
                    location = (artifact_root / study).resolve().as_uri() if artifact_root else None
                    self.experiment_id = self.client.create_experiment(study, artifact_location=location)
                else:
                    self.experiment_id = exp.experiment_id
                # without it MLflow 3 guesses and opens a GenAI overview; with it, the runs table (an experiment
                # made by an older version is tagged when reopened)
                if exp is None or EXPERIMENT_KIND not in exp.tags:  # a kind the user set stays
                    with contextlib.suppress(Exception):  # cosmetic: a store refusing it must not stop a search
                        self.client.set_experiment_tag(self.experiment_id, EXPERIMENT_KIND, KIND_RUNS)
                break
            except Exception as exc:  # only a lost creation race is worth another try; the rest fails now
                if attempt == 5 or not contention(exc):
                    raise TrackingError(f"MLflow store {self.uri} is not usable: {one_line(exc)}") from None
                time.sleep(0.2 + random.random() * 0.5)
        self.parent_id = self._parent() if create_parent else ""

    def _parents(self):
        return self.client.search_runs([self.experiment_id], filter_string=f"tags.`{ROLE}` = 'study'",
                                       order_by=["attributes.start_time ASC", "attributes.run_id ASC"])

    def _parent(self) -> str:
        runs = self._parents()
        if runs:
            self.client.update_run(runs[0].info.run_id, status="RUNNING")
            return runs[0].info.run_id
        mine = self.client.create_run(self.experiment_id, run_name=f"study:{self.study}",
                                      tags={ROLE: "study", STUDY: self.study}).info.run_id
        # workers starting together may each create one: all converge on the earliest, the others delete theirs
        first = self._parents()[0].info.run_id
        if first != mine:
            self.client.delete_run(mine)
        return first

    def start_trial(self, number: int, params: dict[str, Any]) -> str:
        from mlflow.entities import Param

        run = self.client.create_run(
            self.experiment_id, run_name=f"trial-{number:03d}",
            tags={"mlflow.parentRunId": self.parent_id, ROLE: "trial", STUDY: self.study, TRIAL: str(number),
                  STATE: "running"},
        )
        self._open.add(run.info.run_id)
        self._names[run.info.run_id] = f"trial-{number:03d}"
        safe = redact(params)
        self.client.log_batch(run.info.run_id, params=[Param(k, _param(v)) for k, v in sorted(safe.items())])
        return run.info.run_id

    def finish_trial(self, run_id: str, metrics: dict[str, float], files: dict[str, Path], tags: dict[str, str],
                     failed: bool = False, killed: bool = False,
                     tables: dict[str, list[dict[str, Any]]] | None = None) -> None:
        from mlflow.entities import Metric, RunTag

        now = int(time.time() * 1000)
        ms = [Metric(k, float(v), now, 0) for k, v in sorted(metrics.items())
              if isinstance(v, int | float) and math.isfinite(v)]
        for i in range(0, len(ms), 500):
            self.client.log_batch(run_id, metrics=ms[i:i + 500])
        shown = [f"{m} {metrics[m]:.3g}" for m, _ in self.objectives if isinstance(metrics.get(m), int | float)
                 and math.isfinite(metrics[m])]
        if shown and not (failed or killed) and run_id in self._names:  # a short screening window says so
            screen = ["(screen)"] if tags.get("autotune.fidelity") == "screen" else []
            tags = {**tags, "mlflow.runName": " · ".join([self._names[run_id], *screen, *shown])}
        self.client.log_batch(run_id, tags=[RunTag(k, scrub(str(v))[:5000]) for k, v in tags.items()])
        for name, path in files.items():
            if path.is_file():
                _log_file_as(self.client, run_id, path, name)
        levels = (tables or {}).get("capacity_levels.json") or []
        history = [Metric(k, v, now, step) for k, v, step in level_history(levels)]
        for i in range(0, len(history), 500):  # each level one step: MLflow's charts draw the latency-load curve
            self.client.log_batch(run_id, metrics=history[i:i + 500])
        for name, rows in (tables or {}).items():
            if rows:  # shown as a table in the run's artifact view (and queryable with mlflow.load_table)
                self.client.log_table(run_id, data={k: [scrub_obj(r.get(k)) for r in rows] for k in rows[0]},
                                      artifact_file=name)
        status = "KILLED" if killed else "FAILED" if failed else "FINISHED"
        self.client.set_terminated(run_id, status=status)
        self._open.discard(run_id)

    def mark_interrupted(self, run_id: str) -> None:
        self.client.set_tag(run_id, STATE, "interrupted")
        self.client.set_terminated(run_id, status="KILLED")
        self._open.discard(run_id)

    def set_pareto(self, run_ids_on_front: set[str], all_run_ids: list[str]) -> None:
        for rid in all_run_ids:
            self.client.set_tag(rid, PARETO, "true" if rid in run_ids_on_front else "false")

    def log_front(self, table: list[dict[str, Any]], figures: dict[str, Any], summary: dict[str, float],
                  note: str | None = None) -> None:
        """The current front on the parent: artifacts, figures, counters, and (`note`) the run's description,
        with a tag holding the compare-view link on the front's members."""
        from mlflow.entities import Metric, RunTag

        # log_dict/log_text overwrite (log_table would append), so the parent always shows the current front
        self.client.log_dict(self.parent_id, scrub_obj({"front": table}), "pareto_front.json")
        self.client.log_text(self.parent_id, scrub(front_markdown(table)), "pareto_front.md")
        tags = [RunTag(COMPARE, self.compare_url(table))]
        if note is not None:
            tags.append(RunTag("mlflow.note.content", scrub(note)[:NOTE_LIMIT]))
        self.client.log_batch(self.parent_id, tags=tags)
        for name, fig in figures.items():
            self.client.log_figure(self.parent_id, fig, name)
        now = int(time.time() * 1000)
        ms = [Metric(k, float(v), now, 0) for k, v in summary.items() if math.isfinite(v)]
        if ms:
            self.client.log_batch(self.parent_id, metrics=ms)

    def repair_runs(self, final: dict[str, tuple[str, dict[str, float]]]) -> int:
        """Trial runs a broken store left RUNNING while Optuna has their trial final (run id -> (status, metrics)):
        the metrics Optuna kept are logged and the run ends with the trial's status. Returns how many."""
        from mlflow.entities import Metric

        stale = self.client.search_runs([self.experiment_id], filter_string=f"tags.`{ROLE}` = 'trial' and "
                                        "attributes.status = 'RUNNING'")
        repaired = 0
        for run in stale:
            if run.info.run_id not in final:
                continue  # a live worker's trial, or one _recover_interrupted has just marked
            status, metrics = final[run.info.run_id]
            now = int(time.time() * 1000)
            ms = [Metric(k, float(v), now, 0) for k, v in sorted(metrics.items()) if math.isfinite(v)]
            for i in range(0, len(ms), 500):
                self.client.log_batch(run.info.run_id, metrics=ms[i:i + 500])
            self.client.set_tag(run.info.run_id, "autotune.repaired", "true")
            self.client.set_terminated(run.info.run_id, status=status)
            repaired += 1
        return repaired

    def fail_open_runs(self, status: str = "FAILED") -> None:
        """Best effort after an error: no trial run of this process and not the parent is left RUNNING."""
        if self.unresponsive:
            return  # every call would wait for the timeout again: the next run repairs them (repair_runs)
        for rid in [*self._open, self.parent_id]:
            if rid:
                with contextlib.suppress(Exception):
                    self.client.set_terminated(rid, status=status)
        self._open.clear()

    def log_study_params(self, params: dict[str, Any]) -> None:
        from mlflow.entities import Param

        existing = self.client.get_run(self.parent_id).data.params
        new = [Param(k, _param(v)) for k, v in redact(params).items() if k not in existing]
        if new:
            self.client.log_batch(self.parent_id, params=new)

    def log_parent_metrics(self, metrics: dict[str, float]) -> None:
        """Study-level counters (one value per search run; a resumed study adds a step)."""
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        history = self.client.get_metric_history(self.parent_id, next(iter(metrics))) if metrics else []
        self.client.log_batch(self.parent_id, metrics=[Metric(k, float(v), now, len(history))
                                                       for k, v in metrics.items()])

    def log_history(self, run_id: str, metrics: dict[str, float], step: int) -> None:
        """Metrics as one more step of their history (confirmation windows of a trial)."""
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        ms = [Metric(k, float(v), now, step) for k, v in metrics.items() if math.isfinite(v)]
        if ms:
            self.client.log_batch(run_id, metrics=ms)

    def recommend(self, run_id: str, bundle_dir: Path) -> None:
        """Tag the chosen trial run `recommended` (and no other run of the study), log the bundle to it."""
        runs = self.client.search_runs([self.experiment_id], filter_string=f"tags.`{RECOMMENDED}` = 'true'")
        for r in runs:
            if r.info.run_id != run_id:
                self.client.set_tag(r.info.run_id, RECOMMENDED, "false")
        self.client.set_tag(run_id, RECOMMENDED, "true")
        for path in sorted(p for p in bundle_dir.rglob("*") if p.is_file()):
            rel = path.relative_to(bundle_dir).parent
            _log_file_as(self.client, run_id, path, path.name, f"bundle/{bundle_dir.name}/{rel}".rstrip("/."))

    def log_parent_file(self, path: Path) -> None:
        _log_file_as(self.client, self.parent_id, path, path.name)

    def end(self, status: str = "FINISHED") -> None:
        self.client.set_terminated(self.parent_id, status=status)

    def run_url(self, run_id: str | None = None) -> str:
        return run_url(self.experiment_id, run_id or self.parent_id)

    def compare_url(self, front: list[dict[str, Any]]) -> str:
        """The compare view on the front's members (the parent's runs table when the front is empty)."""
        ids = [r["mlflow_run_id"] for r in front if r.get("mlflow_run_id")]
        return compare_url(self.experiment_id, ids) if ids else runs_table_url(self.experiment_id)


def latest_study_url(uri: str) -> str:
    """The runs table of the study most recently written to the store ("" when it holds none, or is unreadable:
    the UI then opens on its experiment list)."""
    path = local_path(uri)  # only a local sqlite file: never create a store, or wait on a remote one, for a link
    if not uri.startswith("sqlite:///") or path is None or not path.is_file():
        return ""
    try:
        _bound_mlflow_retries()
        from mlflow import MlflowClient

        client = MlflowClient(tracking_uri=uri)
        ids = [e.experiment_id for e in client.search_experiments(max_results=1000)]
        # the newest trial run's study (an experiment's last_update_time does not move when runs are logged)
        runs = client.search_runs(ids, filter_string=f"tags.`{ROLE}` = 'trial'",
                                  order_by=["attributes.start_time DESC"], max_results=1) if ids else []
    except Exception:
        return ""
    return runs_table_url(runs[0].info.experiment_id) if runs else ""


def _bound_mlflow_retries() -> None:
    """MLflow retries an unusable SQL store for minutes and an HTTP server for about two; bound both, and keep
    its store-error tracebacks off the screen (each becomes one TrackingError line)."""
    import logging

    import mlflow.store.db.utils as db_utils

    db_utils.MAX_RETRY_COUNT = min(db_utils.MAX_RETRY_COUNT, 3)
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")  # a blackholed server: ~45 s, not minutes
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    logging.getLogger("mlflow.store").setLevel(logging.CRITICAL)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    install_log_scrubbing()


LOCKED_RETRIES = 4  # a locked sqlite store (several workers) is retried this often before it is a failure
UNRESPONSIVE_S = 5.0  # a store call that failed after this long is a store that does not answer


def probe_store(uri: str, option: str = "--mlflow-uri") -> None:
    """Before any study or run exists: the tracking store answers (a server, a database) or fails in one line."""
    _bound_mlflow_retries()
    from mlflow import MlflowClient

    from autotune.stores import check_mlflow_uri, contention, init_lock

    check_mlflow_uri(uri, option)
    for attempt in range(6):
        try:
            with init_lock(uri):  # the first process creates the schema; the others wait, then find it
                MlflowClient(tracking_uri=uri).search_experiments(max_results=1)
            return
        except Exception as exc:  # workers starting together race to create the schema: only that is retried
            if attempt == 5 or not contention(exc):
                raise ConfigError(option, "", f"the MLflow store does not answer ({one_line(exc)})",
                                  scrub(uri)) from None
            time.sleep(0.2 + random.random() * 0.5)


def _store_errors(fn):
    """Any failure of the store mid-search becomes one TrackingError line (Optuna already has the trial)."""

    @functools.wraps(fn)
    def wrapper(self, *args, **kwargs):
        if self.unresponsive:  # one timeout is enough: later calls fail at once instead of waiting again
            raise TrackingError(f"MLflow store {self.uri} stopped answering; {fn.__name__} skipped")
        for attempt in range(LOCKED_RETRIES + 1):
            started = time.monotonic()  # per attempt: the waits between attempts are not the store's silence
            try:
                return fn(self, *args, **kwargs)
            except TrackingError:
                raise
            except Exception as exc:
                # workers sharing one sqlite store meet its single-writer lock: a short wait, not a failure
                if attempt < LOCKED_RETRIES and "database is locked" in str(exc).lower():
                    time.sleep(0.5 * (attempt + 1) + random.random())
                    continue
                self.unresponsive = time.monotonic() - started > UNRESPONSIVE_S
                raise TrackingError(f"MLflow store {self.uri} failed in {fn.__name__}: {one_line(exc)}") from None

    return wrapper


for _name in ("start_trial", "finish_trial", "log_history", "mark_interrupted", "set_pareto", "log_front",
              "log_study_params", "log_parent_metrics", "recommend", "log_parent_file", "end", "repair_runs"):
    setattr(MlflowTracker, _name, _store_errors(getattr(MlflowTracker, _name)))


def _log_file_as(client, run_id: str, path: Path, name: str, artifact_path: str | None = None) -> None:
    """Log `path` under artifact name `name` (a reused engine's log lives in an earlier trial's directory). Every
    file passes the redaction policy: one holding a known secret value is logged as a scrubbed copy."""
    data = path.read_bytes()
    if path.name == name and not contains_secret(data):
        client.log_artifact(run_id, str(path), artifact_path)
        return
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        target = Path(tmp) / name
        target.write_bytes(scrub_bytes(data))
        client.log_artifact(run_id, str(target), artifact_path)


def front_markdown(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "No feasible trial yet.\n"
    cols = [c for c in rows[0] if c not in ("mlflow_run_id", "pareto")]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        lines.append("| " + " | ".join(f"{r.get(c):.4g}" if isinstance(r.get(c), float) else str(r.get(c))
                                       for c in cols) + " |")
    return "\n".join(lines) + "\n"


def _param(v: Any) -> str:
    return str(v)[:6000]
