"""Task-level metrics, format/repair/cache metrics and the node breakdown, checked by hand."""

from __future__ import annotations

import math

import pytest

from autotune.measure.task_metrics import breakdown_markdown, node_breakdown, summarize_tasks


def span(node, start, end, kind="fm", tin=10, tout=5):
    return {"node": node, "kind": kind, "deps": [], "start": start, "end": end, "ms": (end - start) * 1000,
            "ttft_s": 0.01 if kind == "fm" else None, "tokens_in": tin if kind == "fm" else 0,
            "tokens_out": tout if kind == "fm" else 0}


def task(n, latency, score, *, ok=True, phase="measure", hit=None, parses=None, spans=None, crit=None):
    spans = spans or [span("call.all", 0, latency * 0.9), span("parse.all", latency * 0.9, latency, "cpu")]
    return {"n": n, "id": f"i{n}", "phase": phase, "ok": ok, "latency_s": latency, "score": score,
            "fm_calls": sum(s["kind"] == "fm" for s in spans), "tokens_in": 10, "tokens_out": 5,
            "complete": score > 0, "cache_hit": hit is not None, "cache": hit,
            "parses": parses if parses is not None else [{"valid": True, "repair": "none", "reasked": False}],
            "spans": spans, "critical_path": crit or [s["node"] for s in spans]}


def test_latency_throughput_goodput_quality():
    tasks = [task(0, 9.0, 1.0, phase="warmup")] + [task(i, 0.1 * i, 1.0) for i in range(1, 11)]
    tasks.append(task(11, 0.5, 0.0, ok=False))
    m = summarize_tasks(tasks, window_s=10.0, sla={"task_ms": 500})
    assert m["tasks_ok"] == 10 and m["tasks_per_s"] == 1.0
    assert m["task_error_rate"] == pytest.approx(1 / 11)
    assert m["p50_task_ms"] == pytest.approx(550.0) and m["mean_task_ms"] == pytest.approx(550.0)
    assert m["task_sla_attainment"] == pytest.approx(5 / 11) and m["task_goodput_tps"] == 0.5
    assert m["quality"] == 1.0 and m["fm_calls_per_task"] == 1 and m["input_tokens_per_task"] == 10
    assert math.isnan(m["cache_hit_rate"])


def test_validity_and_repair_rates():
    parses = [[{"valid": True, "repair": "none", "reasked": False}],
              [{"valid": False, "repair": "cpu", "reasked": False}],
              [{"valid": False, "repair": "reask", "reasked": True}],
              [{"valid": False, "repair": "failed", "reasked": True}]]
    tasks = [task(i, 1.0, 1.0, parses=p) for i, p in enumerate(parses)]
    tasks[2]["spans"].append(span("reask.all", 1.0, 1.5, tin=30, tout=5))
    m = summarize_tasks(tasks, 10.0, None)
    assert m["validity_rate"] == 0.25 and m["repair_cpu_rate"] == 0.25
    assert m["reask_rate"] == 0.5 and m["reask_success_rate"] == 0.5
    assert m["reask_ms_per_task"] == pytest.approx(125.0) and m["reask_tokens_per_task"] == pytest.approx(35 / 4)


def test_cache_hit_rate_savings_and_false_hits():
    lookup = span("cache.lookup", 0, 0.02, "cpu")
    fresh = [task(i, 2.0, 1.0, spans=[lookup, span("call.all", 0.02, 2.0)]) for i in range(4)]
    good_hit = task(4, 0.1, 1.0, hit={"source": {"n": 0}}, spans=[lookup], parses=[])
    false_hit = task(5, 0.1, 0.0, hit={"source": {"n": 1}}, spans=[lookup], parses=[])  # other person's answer
    m = summarize_tasks([*fresh, good_hit, false_hit], 10.0, None)
    assert m["cache_hit_rate"] == pytest.approx(2 / 6)
    assert m["cache_false_hit_rate"] == 0.5
    assert m["cache_saved_ms_per_task"] == pytest.approx(2 / 6 * 1900.0)
    assert m["cache_lookup_ms"] == pytest.approx(20.0)
    assert m["validity_rate"] == 1.0, "cache hits parse nothing and must not dilute validity"


def test_node_breakdown_names_the_node_that_dominates_the_tail():
    fast = [task(i, 1.0, 1.0, spans=[span("call.email", 0, 0.5), span("call.address", 0, 0.9),
                                     span("aggregate", 0.9, 1.0, "cpu")],
                 crit=["call.address", "aggregate"]) for i in range(19)]
    slow = task(19, 5.0, 1.0, spans=[span("call.email", 0, 4.8), span("call.address", 0, 1.0),
                                     span("aggregate", 4.8, 5.0, "cpu")], crit=["call.email", "aggregate"])
    rows = node_breakdown([*fast, slow])
    assert rows[0]["node"] == "call.email" and rows[0]["p95_tail_share"] == pytest.approx(0.96)
    by = {r["node"]: r for r in rows}
    assert by["call.address"]["critical_rate"] == pytest.approx(19 / 20)
    assert by["call.email"]["runs_per_task"] == 1 and by["aggregate"]["kind"] == "cpu"
    md = breakdown_markdown(rows, [{"node": "call.email", "deps": []},
                                   {"node": "aggregate", "deps": ["call.email", "reask.email"]}])
    assert "Dominant node of the p95 tail: **call.email**" in md and "call_email[call.email] --> " in md
    assert "reask" not in md, "nodes that did not run are not drawn"
    m = summarize_tasks([*fast, slow], 10.0, None)
    assert m["critical_path_dominant_share"] == pytest.approx(0.96)
