"""The Pareto front of a study: its rows, the screening test against it, and its MLflow/Rich update."""

from __future__ import annotations

import math
from typing import Any

import optuna

from autotune.config import SpaceConfig
from autotune.pareto import front_indices
from autotune.tracking import MlflowTracker


def could_reach_front(study, space: SpaceConfig, values: list[float], margins: list[float]) -> bool:
    """Not dominated by any full-fidelity front member even if better by its margin on every objective."""
    _, front = front_rows(study, space)
    hopeful = []
    for v, o, margin in zip(values, space.objectives, margins, strict=True):
        better = v * (1 - margin) if o.direction == "minimize" else v * (1 + margin)
        hopeful.append(better if v >= 0 else v)
    points = [[r[o.metric] for o in space.objectives] for r in front] + [hopeful]
    return len(points) - 1 in front_indices(points, [o.direction for o in space.objectives])


EXTRAS = ("quality", "quality_ci_low", "quality_ci_high", "p95_task_ms", "validity_rate", "fm_calls_per_task",
          "output_tokens_per_task", "tasks_per_s", "p95_ttft_ms", "startup_s", "task_error_rate", "capacity_tps",
          "p95_task_ms_at_load", "usd_per_1k_tasks", "capacity_low", "capacity_high", "capacity_bracket",
          "capacity_resolved", "p95_task_ms_at_load_os_low", "p95_task_ms_at_load_os_high")


def front_rows(study, space: SpaceConfig, judge: bool = False) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(one row per feasible measured config, the Pareto rows). Trials of an identical config and its
    confirmation windows are one row (`windows` says how many); a confirmed config is estimated from its
    confirmation windows only. Screened (short-window) trials and infeasible configs never enter. `judge`: add
    each window objective's interval (`<metric>_low`/`_high`, from the study's pooled window noise) and the
    front members' "equivalent within noise" class (`class`, Holm-tested differences)."""
    from autotune.objectives import evaluate
    from autotune.search.config_points import intervals, judge_front, resolution, study_noise, study_points

    points = study_points(study, space)
    rows, kept = [], []
    for cp in points:
        metrics = cp.metrics()
        ev = evaluate(metrics, space.objectives, space.constraints)
        if not ev.feasible:
            continue
        first = cp.trials[0]
        row = {"trial": cp.number, **first.params, "mlflow_run_id": first.user_attrs.get("mlflow_run_id"),
               "trials": [t.number for t in cp.trials], "windows": int(metrics["windows"]),
               "confirmed": cp.confirmed, "failed_windows": cp.failed_windows, "config_key": cp.key,
               "confirm_failed": cp.confirm_failed,
               # why a bracket is wider than asked (the search's stop reason), per window the estimate uses
               "capacity_stop": sorted({str(t.user_attrs["capacity_stop"]) for t in cp.trials
                                        if t.user_attrs.get("capacity_stop")}) or None}
        for o, v in zip(space.objectives, ev.values, strict=True):
            row[o.metric] = v
        for extra in EXTRAS:
            row.setdefault(extra, metrics.get(extra))
        rows.append(row)
        kept.append(cp)
    directions = [o.direction for o in space.objectives]
    on_front = set(front_indices([[r[o.metric] for o in space.objectives] for r in rows], directions))
    for i, r in enumerate(rows):
        r["pareto"] = i in on_front
    if judge and rows:
        res = resolution(space, study_workload(study))
        noise = study_noise(study, points, space, res)
        for cp, r in zip(kept, rows, strict=True):
            r.update({k: v for k, v in intervals(cp, space, noise, res).items() if k.endswith(("_low", "_high"))})
        verdict = judge_front([cp for cp, r in zip(kept, rows, strict=True) if r["pareto"]], space, noise, res)
        for r in rows:
            r["class"] = verdict.labels.get(r["config_key"]) if r["pareto"] else None
            r["noise_unknown"] = verdict.untested
    return rows, [r for r in rows if r["pareto"]]


def study_workload(study):
    """The study's workload (for the capacity grid's resolution), or None when it cannot be read."""
    path = study.user_attrs.get("workload_file")
    if not path:
        return None
    try:
        from autotune.config import load_workload

        return load_workload(path, host_checks=False)
    except Exception:  # a moved workload file only loses the resolution floor, not the front
        return None


def update_front(study, space: SpaceConfig, tracker: MlflowTracker, reporter) -> None:
    from autotune.tracking import level_points, levels_png, pareto_html, pareto_png, study_note

    rows, front = front_rows(study, space, judge=True)
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
    done = [t.user_attrs.get("metrics", {}) for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE
            and t.user_attrs.get("duplicate_of") is None]  # a re-proposal told without a measurement is no trial
    wall = sum(m.get("trial_wall_s", 0.0) for m in done)
    economy = {  # where the study's time went: measuring vs starting engines, and restarts saved by reuse
        "study_measure_share": sum(m.get("measure_s", 0.0) for m in done) / wall if wall else math.nan,
        "study_startup_s": sum(m.get("startup_s", 0.0) for m in done),
        "study_engine_reuses": sum(m.get("engine_reused", 0.0) for m in done),
    }
    context = {"study": tracker.study, "sla": space.sla.model_dump(), "objectives": objectives,
               "constraints": [c.model_dump() for c in space.constraints], "command": study.user_attrs.get("reproduce")}
    tracker.log_front(front, figures, {"front_size": float(len(front)), "trials_complete": float(len(done)),
                                       "trials_feasible": float(len(rows)), **economy},
                      note=study_note(front, context, list(space.knobs)))
    import matplotlib.pyplot as plt

    for name, fig in figures.items():
        if name.endswith(".png"):
            plt.close(fig)
    reporter.front(front, objectives)
