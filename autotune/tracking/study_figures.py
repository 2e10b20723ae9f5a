"""Study-level figures for `autotune report`: hypervolume over trials and parallel coordinates."""

from __future__ import annotations

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


def hypervolume_png(curve: list[tuple[int, float]]):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.6))
    ax.step([t for t, _ in curve], [h for _, h in curve], where="post", marker="o")
    ax.set_xlabel("trial")
    ax.set_ylabel("hypervolume (scaled objectives)")
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
