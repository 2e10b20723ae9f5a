"""The Pareto front of a study: its rows, the screening test against it, and its MLflow/Rich update."""

from __future__ import annotations

import math
from typing import Any

import optuna

from autotune.config.space import SpaceConfig
from autotune.pareto import front_indices
from autotune.tracking.mlflow_tracker import MlflowTracker


def could_reach_front(study, space: SpaceConfig, values: list[float], margin: float) -> bool:
    """Not dominated by any full-fidelity front member even if `margin` better on every objective."""
    _, front = front_rows(study, space)
    hopeful = []
    for v, o in zip(values, space.objectives, strict=True):
        better = v * (1 - margin) if o.direction == "minimize" else v * (1 + margin)
        hopeful.append(better if v >= 0 else v)
    points = [[r[o.metric] for o in space.objectives] for r in front] + [hopeful]
    return len(points) - 1 in front_indices(points, [o.direction for o in space.objectives])


def front_rows(study, space: SpaceConfig) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(all feasible complete trials as rows, the Pareto rows); infeasible trials never enter the front."""
    rows = []
    for t in study.trials:
        if t.state != optuna.trial.TrialState.COMPLETE or not t.user_attrs.get("feasible", True):
            continue
        if t.user_attrs.get("fidelity", "full") != "full":
            continue  # screened out after a short window: never on the front
        metrics = t.user_attrs.get("metrics", {})
        row = {"trial": t.number, **t.params, "mlflow_run_id": t.user_attrs.get("mlflow_run_id")}
        for o, v in zip(space.objectives, t.values, strict=True):
            row[o.metric] = v
        for extra in ("quality", "p95_task_ms", "validity_rate", "fm_calls_per_task", "output_tokens_per_task",
                      "tasks_per_s", "p95_ttft_ms", "startup_s", "task_error_rate", "capacity_tps",
                      "p95_task_ms_at_load", "usd_per_1k_tasks"):
            row.setdefault(extra, metrics.get(extra))
        rows.append(row)
    directions = [o.direction for o in space.objectives]
    on_front = set(front_indices([[r[o.metric] for o in space.objectives] for r in rows], directions))
    for i, r in enumerate(rows):
        r["pareto"] = i in on_front
    return rows, [r for r in rows if r["pareto"]]


def update_front(study, space: SpaceConfig, tracker: MlflowTracker, reporter) -> None:
    from autotune.tracking.plots import pareto_html, pareto_png
    from autotune.tracking.study_figures import level_points, levels_png

    rows, front = front_rows(study, space)
    objectives = [(o.metric, o.direction) for o in space.objectives]
    all_ids = [t.user_attrs["mlflow_run_id"] for t in study.trials if t.user_attrs.get("mlflow_run_id")
               and t.state == optuna.trial.TrialState.COMPLETE]
    tracker.set_pareto({r["mlflow_run_id"] for r in front}, all_ids)
    figures = {}
    if rows:
        knobs = [k for k in space.knobs]
        figures = {"pareto.png": pareto_png(rows, objectives), "pareto.html": pareto_html(rows, objectives, knobs)}
    points = level_points(study.trials)
    if points:
        figures["capacity_levels.png"] = levels_png(points, space.sla.task_ms)
    done = [t.user_attrs.get("metrics", {}) for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    wall = sum(m.get("trial_wall_s", 0.0) for m in done)
    economy = {  # where the study's time went: measuring vs starting engines, and restarts saved by reuse
        "study_measure_share": sum(m.get("measure_s", 0.0) for m in done) / wall if wall else math.nan,
        "study_startup_s": sum(m.get("startup_s", 0.0) for m in done),
        "study_engine_reuses": sum(m.get("engine_reused", 0.0) for m in done),
    }
    tracker.log_front(front, figures, {"front_size": float(len(front)), "trials_complete": float(len(done)),
                                       "trials_feasible": float(len(rows)), **economy})
    import matplotlib.pyplot as plt

    for name, fig in figures.items():
        if name.endswith(".png"):
            plt.close(fig)
    reporter.front(front, objectives)
