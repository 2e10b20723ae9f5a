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


def latency_load_png(rows: list[dict[str, Any]], sla_ms: float | None, capacity: float, path) -> None:
    """A trial's latency-load curve: p50/p95 task latency per offered rate, passing and failing levels, the SLA
    line and the capacity found."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pts = sorted(rows, key=lambda r: r["rate"])
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot([r["rate"] for r in pts], [r["p50_task_ms"] for r in pts], "o-", c="#4C72B0", label="p50 task")
    ax.plot([r["rate"] for r in pts], [r["p95_task_ms"] for r in pts], "s-", c="#DD8452", label="p95 task")
    for r in pts:
        ax.annotate(f"{r['attainment']:.0%}" if r["attainment"] == r["attainment"] else "-",
                    (r["rate"], r["p95_task_ms"]), fontsize=8, xytext=(3, 5), textcoords="offset points",
                    color="#2ca02c" if r["passed"] else "#d62728")
    if sla_ms:
        ax.axhline(sla_ms, ls="--", c="#d62728", label=f"SLA {sla_ms:g} ms")
    if capacity > 0:
        ax.axvline(capacity, ls=":", c="#2ca02c", label=f"capacity {capacity:.3g} tasks/s")
    ax.set_xlabel("offered task rate (tasks/s)")
    ax.set_ylabel("task latency (ms)")
    ax.set_title("latency-load (labels: SLA attainment; green passed)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
