"""Run one task (an item through the architecture's DAG) and turn its trace into the per-task record."""

from __future__ import annotations

from typing import Any

from autotune.fmware import architectures
from autotune.fmware.app import AppConfig
from autotune.fmware.dag import ChatFn, execute


def run_task(app: AppConfig, item: dict[str, Any], chat: ChatFn, cache=None) -> dict[str, Any]:
    """Execute the task; every outcome (including failures) is a record, never an exception."""
    trace = execute(architectures.build(app, item, cache), chat)
    agg = trace.results.get("aggregate") or {}
    hit = agg.get("cache")
    fm = [s for s in trace.spans if s.kind == "fm"]
    return {
        "ok": trace.error is None and "aggregate" in trace.results,
        "error": trace.error,
        "latency_s": trace.latency_s,
        "fm_calls": trace.fm_calls,
        "tokens_in": sum(s.tokens_in for s in fm),
        "tokens_out": sum(s.tokens_out for s in fm),
        "answer": agg.get("values", {}),
        "complete": bool(agg.get("complete")),
        "cache_hit": bool(agg.get("cache_hit")),
        "cache": {"similarity": hit["similarity"], "source": hit["source"]} if hit else None,
        "parses": architectures.parse_stats(trace.results),
        "spans": [s.as_dict() for s in trace.spans],
        "critical_path": [s.node for s in trace.critical_path()],
        "skipped": sorted(trace.skipped),
    }
