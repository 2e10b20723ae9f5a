"""Study-level figures for `autotune report`: hypervolume over trials and parallel coordinates."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from autotune.pareto import hypervolume


def hypervolume_curve(rows: list[dict[str, Any]], objectives: list[tuple[str, str]]) -> list[tuple[int, float]]:
    """(trial, hypervolume of the feasible trials up to it), objectives scaled to [0, 1] over all rows and the
    reference point at the worst corner, so the curve is comparable within the study."""
    if not rows:
        return []
    names = [o for o, _ in objectives]
    directions = [d for _, d in objectives]
    vals = np.array([[r[n] for n in names] for r in rows], dtype=float)
    lo, hi = vals.min(0), vals.max(0)
    span = np.where(hi - lo > 0, hi - lo, 1.0)
    scaled = (vals - lo) / span
    ref = [1.1 if d == "minimize" else -0.1 for d in directions]
    order = np.argsort([r["trial"] for r in rows])
    out = []
    for k in range(1, len(order) + 1):
        idx = order[:k]
        out.append((int(rows[order[k - 1]]["trial"]), hypervolume(scaled[idx].tolist(), directions, ref)))
    return out


HV_REFERENCE = ("objectives scaled to [0, 1] over the study; reference point 10% beyond the worst value of each, "
                "so k objectives give at most 1.1^k")


def hypervolume_png(curve: list[tuple[int, float]]):
    """Step plot of `hypervolume_curve`: whole trial numbers on x, and y from 0, so that a small gain looks small
    (an axis zoomed onto the curve's range makes noise look like progress)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, ax = plt.subplots(figsize=(6, 3.6))
    ax.step([t for t, _ in curve], [h for _, h in curve], where="post", marker="o")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylim(bottom=0, top=max([h for _, h in curve if math.isfinite(h)] + [0.0]) * 1.05 or 1.0)
    ax.set_xlabel("trial")
    ax.set_ylabel("hypervolume\n(scaled objectives; reference:\nworst value of each + 10%)", fontsize=8)
    ax.set_title("Hypervolume of the feasible trials so far")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def knob_codes(rows: list[dict[str, Any]], knobs: list[str]) -> dict[str, dict[Any, int]]:
    """Categorical knob values -> integer codes (sorted), for axes that need numbers."""
    codes = {}
    for k in knobs:
        values = {r.get(k) for r in rows if r.get(k) is not None}
        if values and not all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
            codes[k] = {v: i for i, v in enumerate(sorted(values, key=str))}
    return codes


def parallel_html(rows: list[dict[str, Any]], knobs: list[str], objectives: list[tuple[str, str]]):
    """Plotly parallel coordinates: every knob (categorical ones coded, tick labels kept) then the objectives."""
    import plotly.graph_objects as go

    codes = knob_codes(rows, knobs)
    dims = []
    for k in knobs:
        if not any(r.get(k) is not None for r in rows):
            continue
        if k in codes:
            dims.append(dict(label=k, values=[codes[k].get(r.get(k), -1) for r in rows],
                             tickvals=list(codes[k].values()), ticktext=[str(v) for v in codes[k]]))
        else:
            dims.append(dict(label=k, values=[r.get(k) if r.get(k) is not None else float("nan") for r in rows]))
    for name, _ in objectives:
        dims.append(dict(label=name, values=[r[name] for r in rows]))
    color = [1 if r["pareto"] else 0 for r in rows]
    fig = go.Figure(go.Parcoords(line=dict(color=color, colorscale=[[0, "#bbbbbb"], [1, "#d62728"]]),
                                 dimensions=dims))
    fig.update_layout(title="knobs vs objectives (red: Pareto front)")
    return fig


def level_points(trials) -> list[dict[str, Any]]:
    """Every measured load level of every capacity trial: (trial, tasks/s per replica, p95, tokens/s per user)."""
    return [{"trial": t.number, **lv} for t in trials for lv in t.user_attrs.get("capacity_levels", [])
            if lv.get("tasks_per_s") == lv.get("tasks_per_s") and lv.get("p95_task_ms") == lv.get("p95_task_ms")]


def levels_png(points: list[dict[str, Any]], sla_ms: float | None):
    """The InferenceMAX/AIConfigurator chart at application level: each level of each trial is a point, tasks/s
    per replica against p95 task latency; the frontier is the best latency any config reached at each rate."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from autotune.pareto import front_indices

    # a level in which no task completed has no latency: it is counted in its trial's levels, not drawn here
    points = [p for p in points if p.get("tasks_per_s") is not None and p.get("p95_task_ms") is not None]
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for passed, color, label in ((True, "#2ca02c", "level held the SLA"), (False, "#d62728", "level missed it")):
        pts = [p for p in points if bool(p.get("passed")) == passed]
        ax.scatter([p["tasks_per_s"] for p in pts], [p["p95_task_ms"] for p in pts], c=color, s=30, label=label)
    front = sorted((points[i] for i in front_indices([[p["tasks_per_s"], p["p95_task_ms"]] for p in points],
                                                     ["maximize", "minimize"])), key=lambda p: p["tasks_per_s"])
    if front:
        ax.plot([p["tasks_per_s"] for p in front], [p["p95_task_ms"] for p in front], "k--", lw=1, label="frontier")
        for p in front:
            ax.annotate(str(p["trial"]), (p["tasks_per_s"], p["p95_task_ms"]), fontsize=7, xytext=(3, 3),
                        textcoords="offset points")
    if sla_ms:
        ax.axhline(sla_ms, ls=":", c="#d62728")
    ax.set_xlabel("tasks/s per replica (completed)")
    ax.set_ylabel("p95 task latency (ms)")
    ax.set_yscale("log")
    ax.set_title("every load level of every trial")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
