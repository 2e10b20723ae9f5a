"""Per-task records -> task-level metrics, format/repair/cache metrics and the per-node breakdown. Pure.

A task record is written by the load generator (autotune/fmware/runner.py) and scored by the trial:
phase, ok, latency_s, fm_calls, tokens_in/out, answer, complete, cache_hit, cache {source}, parses
[{valid, repair}], spans [{node, kind, start, end, ms, ttft_s, tokens_in, tokens_out}], critical_path, score.
Only tasks of the measurement window count; failed tasks count in the error rate, not in latency.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import numpy as np

from autotune.measure.request_metrics import percentiles, quantile_interval
from autotune.sla import limits_of, task_meets


def _measured(tasks: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    return [t for t in tasks if t.get("phase") == "measure"]


def _mean(xs: Sequence[float]) -> float:
    return float(np.mean(xs)) if len(xs) else math.nan


def _node_ms(t: dict[str, Any], prefix: str) -> float:
    return sum(s["ms"] for s in t.get("spans", []) if s["node"].startswith(prefix))


def summarize_tasks(tasks: Sequence[dict[str, Any]], window_s: float, sla: dict[str, float | None] | None = None
                    ) -> dict[str, float]:
    """Task-level metrics of a window; attainment and goodput by the one SLA rule (autotune/sla.py)."""
    measured = _measured(tasks)
    ok = [t for t in measured if t.get("ok")]
    out: dict[str, float] = {}
    lat = [t["latency_s"] * 1000.0 for t in ok]
    for p, v in percentiles(lat, (50, 90, 95, 99)).items():
        out[f"p{p}_task_ms"] = v
    # the p95's own sampling interval (order statistics; inf where the sample cannot bound it)
    out["p95_task_ms_os_low"], out["p95_task_ms_os_high"] = quantile_interval(lat, 0.95, 0.95)
    out["mean_task_ms"] = _mean(lat)
    out["tasks_ok"] = float(len(ok))
    out["achieved_task_rate"] = len(measured) / window_s
    out["abandoned_tasks"] = float(sum(1 for t in measured if t.get("abandoned")))
    lags = [t["lag_s"] * 1000.0 for t in measured if t.get("scheduled_ts") is not None and "lag_s" in t]
    out["schedule_lag_p95_ms"] = percentiles(lags, (95,))[95]
    out["schedule_lag_max_ms"] = max(lags) if lags else math.nan
    out["task_error_rate"] = (len(measured) - len(ok)) / len(measured) if measured else math.nan
    out["tasks_per_s"] = len(ok) / window_s
    limits = limits_of(sla or {})
    met = [t for t in ok if task_meets(t, limits)]
    out["task_sla_attainment"] = len(met) / len(measured) if measured else math.nan
    out["task_goodput_tps"] = len(met) / window_s
    out["fm_calls_per_task"] = _mean([t["fm_calls"] for t in ok])
    out["input_tokens_per_task"] = _mean([t["tokens_in"] for t in ok])
    out["output_tokens_per_task"] = _mean([t["tokens_out"] for t in ok])
    out["quality"] = _mean([t["score"] for t in ok if "score" in t])
    out["answer_complete_rate"] = _mean([1.0 if t.get("complete") else 0.0 for t in ok])
    out.update(_format_metrics(ok))
    out.update(_cache_metrics(tasks, ok))
    judge = [sum(1 for s in t.get("spans", []) if s["node"].startswith("call.judge")) for t in ok]
    out["judge_calls_per_task"] = _mean(judge)
    rows = node_breakdown(tasks)
    out["critical_path_dominant_share"] = max((r["p95_tail_share"] for r in rows), default=math.nan)
    return out


def _format_metrics(ok: list[dict[str, Any]]) -> dict[str, float]:
    fresh = [t for t in ok if not t.get("cache_hit")]
    parses = [p for t in fresh for p in t.get("parses", [])]
    reasked = [p for p in parses if p.get("reasked")]
    n = len(parses)
    return {
        "validity_rate": sum(p["valid"] for p in parses) / n if n else math.nan,
        "repair_cpu_rate": sum(p["repair"] == "cpu" for p in parses) / n if n else math.nan,
        "reask_rate": len(reasked) / n if n else math.nan,
        "reask_success_rate": sum(p["repair"] == "reask" for p in reasked) / len(reasked) if reasked else math.nan,
        "reask_ms_per_task": _mean([_node_ms(t, "reask.") for t in fresh]),
        "reask_tokens_per_task": _mean([sum(s["tokens_in"] + s["tokens_out"] for s in t.get("spans", [])
                                            if s["node"].startswith("reask.")) for t in fresh]),
        "parse_ms_per_task": _mean([_node_ms(t, "parse.") + _node_ms(t, "reparse.") for t in fresh]),
    }


def _cache_metrics(tasks: Sequence[dict[str, Any]], ok: list[dict[str, Any]]) -> dict[str, float]:
    lookups = [s["ms"] for t in ok for s in t.get("spans", []) if s["node"] == "cache.lookup"]
    if not lookups:
        return {"cache_hit_rate": math.nan, "cache_false_hit_rate": math.nan, "cache_saved_ms_per_task": math.nan,
                "cache_lookup_ms": math.nan}
    score_by_n = {t["n"]: t.get("score") for t in tasks if "n" in t}
    hits = [t for t in ok if t.get("cache_hit")]
    # fresh latency baseline: every miss, warmup included (a warm cache may leave the window without misses)
    misses = [t for t in tasks if t.get("ok") and not t.get("cache_hit")]
    false_hits = 0
    for t in hits:  # the reused answer was scored fresh on its source task; here it scores on this task
        fresh = score_by_n.get(((t.get("cache") or {}).get("source") or {}).get("n"))
        if fresh is not None and t.get("score", 0.0) < fresh:
            false_hits += 1
    hit_rate = len(hits) / len(ok)
    saved = (_mean([t["latency_s"] for t in misses]) - _mean([t["latency_s"] for t in hits])) * 1000.0 \
        if hits and misses else 0.0
    return {"cache_hit_rate": hit_rate, "cache_false_hit_rate": false_hits / len(hits) if hits else math.nan,
            "cache_saved_ms_per_task": hit_rate * saved, "cache_lookup_ms": _mean(lookups)}


def node_breakdown(tasks: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per node: executions, latency, tokens, how often it is on the critical path, and its share of the time of
    the p95 tail (tasks at or above the p95 task latency): the node that dominates p95 has the largest share."""
    ok = [t for t in _measured(tasks) if t.get("ok")]
    if not ok:
        return []
    p95 = percentiles([t["latency_s"] for t in ok], (95,))[95]
    tail = [t for t in ok if t["latency_s"] >= p95]
    tail_time = sum(t["latency_s"] for t in tail) * 1000.0
    total_time = sum(t["latency_s"] for t in ok) * 1000.0
    stats: dict[str, dict[str, Any]] = defaultdict(lambda: {"ms": [], "ttft": [], "in": [], "out": [], "crit": 0,
                                                            "crit_ms": 0.0, "tail_ms": 0.0, "kind": ""})
    for t in ok:
        crit = set(t.get("critical_path", []))
        in_tail = t["latency_s"] >= p95
        for s in t.get("spans", []):
            st = stats[s["node"]]
            st["kind"] = s["kind"]
            st["ms"].append(s["ms"])
            if s.get("ttft_s") is not None:
                st["ttft"].append(s["ttft_s"] * 1000.0)
            st["in"].append(s["tokens_in"])
            st["out"].append(s["tokens_out"])
            if s["node"] in crit:
                st["crit"] += 1
                st["crit_ms"] += s["ms"]
                if in_tail:
                    st["tail_ms"] += s["ms"]
    rows = []
    for name, st in stats.items():
        rows.append({
            "node": name, "kind": st["kind"], "runs": len(st["ms"]), "runs_per_task": len(st["ms"]) / len(ok),
            "mean_ms": _mean(st["ms"]), "p95_ms": percentiles(st["ms"], (95,))[95],
            "mean_ttft_ms": _mean(st["ttft"]), "tokens_in": _mean(st["in"]), "tokens_out": _mean(st["out"]),
            "critical_rate": st["crit"] / len(st["ms"]),
            "critical_share": st["crit_ms"] / total_time if total_time else math.nan,
            "p95_tail_share": st["tail_ms"] / tail_time if tail_time else math.nan,
        })
    rows.sort(key=lambda r: -r["p95_tail_share"])
    return rows


def breakdown_markdown(rows: list[dict[str, Any]], dag: list[dict[str, Any]] | None = None) -> str:
    if not rows:
        return "No completed task in the measurement window.\n"
    lines = [f"Dominant node of the p95 tail: **{rows[0]['node']}** ({rows[0]['p95_tail_share']:.0%} of tail "
             "task time on the critical path).", "",
             "| node | kind | runs/task | mean ms | p95 ms | mean TTFT ms | tokens in | tokens out | on critical "
             "path | share of task time | share of p95 tail |", "|" + "---|" * 11]
    for r in rows:
        lines.append(f"| {r['node']} | {r['kind']} | {r['runs_per_task']:.2f} | {r['mean_ms']:.1f} | "
                     f"{r['p95_ms']:.1f} | {_fmt(r['mean_ttft_ms'])} | {r['tokens_in']:.0f} | {r['tokens_out']:.0f}"
                     f" | {r['critical_rate']:.0%} | {r['critical_share']:.0%} | {r['p95_tail_share']:.0%} |")
    if dag:
        lines += ["", "DAG of one task (executed nodes):", "", "```mermaid", "graph LR"]
        ran = {s["node"] for s in dag}
        for s in dag:
            for d in (d for d in s["deps"] if d in ran):  # skipped nodes (no reask needed...) are not drawn
                lines.append(f"  {_mid(d)}[{d}] --> {_mid(s['node'])}[{s['node']}]")
        lines.append("```")
    return "\n".join(lines) + "\n"


def _fmt(x: float) -> str:
    return "-" if x != x else f"{x:.1f}"


def _mid(name: str) -> str:
    return name.replace(".", "_")
