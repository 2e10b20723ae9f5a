"""Pareto figures for the parent run: a matplotlib PNG (2-D projections) and an interactive plotly HTML."""

from __future__ import annotations

from itertools import combinations
from typing import Any


def pareto_png(rows: list[dict[str, Any]], objectives: list[tuple[str, str]]):
    """rows: every feasible trial with its objective values and `pareto` flag. One panel per objective pair."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pairs = list(combinations([o for o, _ in objectives], 2)) or [(objectives[0][0], objectives[0][0])]
    fig, axes = plt.subplots(1, len(pairs), figsize=(5 * len(pairs), 4.2), squeeze=False)
    for ax, (x, y) in zip(axes[0], pairs, strict=False):
        styles = ((False, dict(c="#bbbbbb", label="dominated")), (True, dict(c="#d62728", label="Pareto")))
        for on_front, style in styles:
            pts = [r for r in rows if r["pareto"] == on_front]
            ax.scatter([r[x] for r in pts], [r[y] for r in pts], s=40, **style)
            for r in pts:
                ax.annotate(str(r["trial"]), (r[x], r[y]), fontsize=8, xytext=(3, 3), textcoords="offset points")
        ax.set_xlabel(x)
        ax.set_ylabel(y)
        ax.grid(alpha=0.3)
    axes[0][0].legend(loc="best", fontsize=8)
    fig.suptitle("autotune: feasible trials and Pareto front (labels: trial number)")
    fig.tight_layout()
    return fig


def pareto_html(rows: list[dict[str, Any]], objectives: list[tuple[str, str]], knobs: list[str]):
    import plotly.graph_objects as go

    names = [o for o, _ in objectives]
    hover = [
        "<br>".join([f"trial {r['trial']}"] + [f"{k}={r.get(k)}" for k in knobs + names]) for r in rows
    ]
    color = ["#d62728" if r["pareto"] else "#999999" for r in rows]
    if len(names) >= 3:
        trace = go.Scatter3d(x=[r[names[0]] for r in rows], y=[r[names[1]] for r in rows],
                             z=[r[names[2]] for r in rows], mode="markers", text=hover, hoverinfo="text",
                             marker=dict(size=6, color=color))
        layout = dict(scene=dict(xaxis_title=names[0], yaxis_title=names[1], zaxis_title=names[2]))
    else:
        y = names[1] if len(names) > 1 else names[0]
        trace = go.Scatter(x=[r[names[0]] for r in rows], y=[r[y] for r in rows], mode="markers", text=hover,
                           hoverinfo="text", marker=dict(size=10, color=color))
        layout = dict(xaxis_title=names[0], yaxis_title=y)
    fig = go.Figure(trace)
    fig.update_layout(title="autotune Pareto front (red) among feasible trials", **layout)
    return fig
