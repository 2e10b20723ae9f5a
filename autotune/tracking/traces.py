"""A trial's task sample as MLflow traces: the slowest tasks of the window (the p95 tail) and a few typical ones.

Each trace is the task's real span tree, rebuilt after the window from its record in tasks.jsonl: the root span
covers the task from its arrival to its end, its children are the DAG nodes that ran, at their recorded times.
The trace is linked to the trial's run through the `mlflow.sourceRun` metadata (what the run's Traces tab and
`search_traces(run_id=...)` filter on).

It is written through the given client's store, synchronously: MLflow's span API would export through the
process-wide tracer (the global tracking URI, not the study's store), may queue the write on a background thread
(MLFLOW_ENABLE_ASYNC_TRACE_LOGGING) and only logs a warning when it fails. Here a failure raises, and a trace
counted as logged is in the store.
"""

from __future__ import annotations

import contextlib
import json
import random
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from autotune.measure import percentiles
from autotune.secrets import scrub, scrub_obj

# node name prefix -> MLflow span type (the UI's icon); FM calls are LLM spans
_SPAN_TYPES = (("call.", "LLM"), ("reask.", "LLM"), ("parse.", "PARSER"), ("reparse.", "PARSER"),
               ("cache.lookup", "RETRIEVER"), ("cache.store", "MEMORY"), ("verdict.", "CHAIN"),
               ("aggregate", "CHAIN"))
_NS = 1_000_000_000
KNOB_ATTRIBUTES = ("model", "quantization", "architecture", "output_format", "constrained", "repair")


def select_sample(tasks: Sequence[dict[str, Any]], tail: int = 3, typical: int = 2) -> list[tuple[str, dict]]:
    """[(label, task)]: up to `tail` slowest measured tasks at or above the p95 latency (failures included: a
    slow failure is part of the tail), then up to `typical` completed tasks nearest the median. Deterministic:
    ties break on the task number."""
    measured = [t for t in tasks if t.get("phase") == "measure" and t.get("latency_s") is not None]
    if not measured:
        return []
    p95 = percentiles([t["latency_s"] for t in measured], (95,))[95]
    slowest = sorted(measured, key=lambda t: (-t["latency_s"], t.get("n", 0)))
    picked = [("tail", t) for t in slowest if t["latency_s"] >= p95][:tail]
    taken = {id(t) for _, t in picked}
    ok = [t for t in measured if t.get("ok") and id(t) not in taken]
    if ok:
        median = percentiles([t["latency_s"] for t in measured if t.get("ok")], (50,))[50]
        near = sorted(ok, key=lambda t: (abs(t["latency_s"] - median), t.get("n", 0)))
        picked += [("typical", t) for t in near[:typical]]
    return picked


def log_task_traces(client, experiment_id: str, run_id: str, tasks: Sequence[dict[str, Any]],
                    attributes: dict[str, Any] | None = None, tail: int = 3, typical: int = 2) -> int:
    """Write the sample's traces to `client`'s store, linked to `run_id`; how many were written. `attributes`
    (model, output format, architecture...) go on every span of the task."""
    from mlflow.tracing.client import TracingClient

    tracing = TracingClient(client.tracking_uri)
    written = 0
    for label, task in select_sample(tasks, tail, typical):
        info, spans = build_trace(task, experiment_id, run_id, label, attributes or {})
        _write(tracing, experiment_id, info, spans)
        written += 1
    return written


def trial_traces(client, experiment_id: str, run_id: str, tasks_file: Path | None,
                 knobs: dict[str, Any]) -> tuple[dict[str, float], dict[str, str]]:
    """For the study, after the window: (metrics traces_logged and trace_write_s, tags). Never raises: a trace
    that cannot be written costs the trial its traces, not its result; the reason becomes a tag."""
    started = time.perf_counter()
    attributes = {k: knobs[k] for k in KNOB_ATTRIBUTES if knobs.get(k) is not None}
    try:
        lines = tasks_file.read_text().splitlines() if tasks_file is not None and tasks_file.exists() else []
        written = log_task_traces(client, experiment_id, run_id, [json.loads(x) for x in lines if x], attributes)
        tags = {}
    except Exception as exc:
        written, tags = 0, {"autotune.trace_error": scrub(f"{type(exc).__name__}: {exc}")[:500]}
    return {"traces_logged": float(written), "trace_write_s": time.perf_counter() - started}, tags


def build_trace(task: dict[str, Any], experiment_id: str, run_id: str, label: str,
                attributes: dict[str, Any]):
    """(TraceInfo, [Span]) for one task record; times are the record's (epoch seconds + offsets)."""
    from mlflow.entities import SpanStatusCode, TraceInfo, TraceLocation, TraceState
    from mlflow.tracing.constant import TRACE_SCHEMA_VERSION, TRACE_SCHEMA_VERSION_KEY, TraceMetadataKey, TraceTagKey

    rng = random.Random()  # ids only: unique, not reproducible
    otel_trace_id = rng.getrandbits(128) or 1
    trace_id = f"tr-{otel_trace_id:032x}"
    origin = task.get("scheduled_ts") or task["send_ts"]  # open loop: latency runs from the arrival
    sent = task["send_ts"]
    end = origin + task["latency_s"]
    ok = bool(task.get("ok"))
    inputs = {"item": task.get("id"), "n": task.get("n"), "sample": label}
    # every path into MLflow passes the redaction policy: an endpoint's error may echo a key or a URL
    outputs = scrub_obj({"answer": task.get("answer"), "ok": ok, "error": task.get("error"),
                         "score": task.get("score")})
    fm = [s for s in task.get("spans", []) if s["kind"] == "fm"]
    usage = _usage(sum(s["tokens_in"] for s in fm), sum(s["tokens_out"] for s in fm))
    root_attrs = {**attributes, "latency_ms": task["latency_s"] * 1000.0, "lag_ms": (sent - origin) * 1000.0,
                  "fm_calls": task.get("fm_calls", 0), "cache_hit": bool(task.get("cache_hit")),
                  "critical_path": task.get("critical_path", []), "skipped": task.get("skipped", []),
                  "abandoned": bool(task.get("abandoned")), "mlflow.chat.tokenUsage": usage}
    root_id = _span_id(rng)
    status = (SpanStatusCode.OK, "") if ok else (SpanStatusCode.ERROR, scrub(str(task.get("error") or "failed")))
    spans = [_span(trace_id, otel_trace_id, root_id, None, f"task {task.get('id')}", "AGENT", origin, end,
                   root_attrs, inputs, outputs, status)]
    if sent - origin > 1e-6:  # an open-loop task that started late: the wait is part of its latency
        spans.append(_span(trace_id, otel_trace_id, _span_id(rng), root_id, "schedule.lag", "UNKNOWN", origin,
                           sent, {}, None, None, (SpanStatusCode.OK, "")))
    critical = set(task.get("critical_path", []))
    for s in task.get("spans", []):
        attrs: dict[str, Any] = {"kind": s["kind"], "deps": s.get("deps", []), "critical": s["node"] in critical,
                                 "wait_ms": (s["start"] - s.get("ready", s["start"])) * 1000.0, "ms": s["ms"]}
        events = []
        if s["kind"] == "fm":
            attrs.update({**attributes, "tokens_in": s["tokens_in"], "tokens_out": s["tokens_out"],
                          "mlflow.chat.tokenUsage": _usage(s["tokens_in"], s["tokens_out"])})
            if s.get("ttft_s") is not None:
                attrs["ttft_ms"] = s["ttft_s"] * 1000.0
                events.append(("first_token", sent + s["start"] + s["ttft_s"]))
            if "model" in attributes:
                attrs["mlflow.llm.model"] = attributes["model"]
        elif "output_format" in attributes:
            attrs["output_format"] = attributes["output_format"]
        # clamped into the root: float rounding must not put a child a nanosecond outside its parent
        start, stop = max(origin, sent + s["start"]), min(end, sent + s["end"])
        spans.append(_span(trace_id, otel_trace_id, _span_id(rng), root_id, s["node"], _span_type(s["node"]),
                           start, max(start, stop), attrs, None, None, (SpanStatusCode.OK, ""), events))
    metadata = {TRACE_SCHEMA_VERSION_KEY: str(TRACE_SCHEMA_VERSION), TraceMetadataKey.SOURCE_RUN: run_id,
                TraceMetadataKey.INPUTS: json.dumps(inputs, default=str)[:250],
                TraceMetadataKey.OUTPUTS: json.dumps(outputs, default=str)[:250],
                TraceMetadataKey.TOKEN_USAGE: json.dumps(usage)}
    info = TraceInfo(trace_id=trace_id, trace_location=TraceLocation.from_experiment_id(experiment_id),
                     request_time=int(origin * 1000), execution_duration=int(round((end - origin) * 1000)),
                     state=TraceState.OK if ok else TraceState.ERROR,
                     request_preview=json.dumps(inputs, default=str)[:1000],
                     response_preview=json.dumps(outputs, default=str)[:1000], trace_metadata=metadata,
                     tags={TraceTagKey.TRACE_NAME: f"task {task.get('id')}", "autotune.sample": label})
    return info, spans


def _write(tracing, experiment_id: str, info, spans) -> None:
    """As MLflow's own exporter does it, synchronously: spans into the tracking store where it takes them,
    then the trace info (merged with the spans' row); a store without span logging gets the spans as the
    trace's data artifact."""
    from mlflow.entities.trace_data import TraceData
    from mlflow.tracing.constant import SpansLocation, TraceTagKey

    with contextlib.suppress(NotImplementedError):
        tracing.log_spans(experiment_id, spans)
    stored = tracing.start_trace(info)
    if stored.tags.get(TraceTagKey.SPANS_LOCATION) != SpansLocation.TRACKING_STORE.value:
        tracing._upload_trace_data(stored, TraceData(spans=spans))


def _span(trace_id: str, otel_trace_id: int, span_id: int, parent_id: int | None, name: str, span_type: str,
          start_s: float, end_s: float, attrs: dict[str, Any], inputs: Any, outputs: Any,
          status: tuple[Any, str], events: list[tuple[str, float]] = ()):
    from mlflow.entities import Span, SpanStatus
    from mlflow.tracing.utils import build_otel_context, dump_span_attribute_value
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import Event, ReadableSpan

    # MLflow stores every span attribute as a JSON string (how LiveSpan.set_attribute writes them)
    raw = {"mlflow.traceRequestId": trace_id, "mlflow.spanType": span_type, **attrs}
    if inputs is not None:
        raw["mlflow.spanInputs"] = inputs
    if outputs is not None:
        raw["mlflow.spanOutputs"] = outputs
    otel = ReadableSpan(
        name=name, context=build_otel_context(otel_trace_id, span_id),
        parent=build_otel_context(otel_trace_id, parent_id) if parent_id else None,
        start_time=_ns(start_s), end_time=_ns(end_s),
        attributes={k: dump_span_attribute_value(v) for k, v in raw.items()},
        status=SpanStatus(status[0], status[1]).to_otel_status(), resource=Resource.get_empty(),
        events=[Event(n, attributes={}, timestamp=_ns(ts)) for n, ts in events])
    return Span(otel)


def _ns(seconds: float) -> int:
    return int(round(seconds * _NS))


def _span_id(rng: random.Random) -> int:
    return rng.getrandbits(64) or 1


def _span_type(node: str) -> str:
    return next((t for prefix, t in _SPAN_TYPES if node.startswith(prefix)), "UNKNOWN")


def _usage(tokens_in: int, tokens_out: int) -> dict[str, int]:
    return {"input_tokens": tokens_in, "output_tokens": tokens_out, "total_tokens": tokens_in + tokens_out}
