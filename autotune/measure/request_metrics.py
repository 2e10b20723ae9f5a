"""Raw per-request records -> latency percentiles, throughput, goodput, errors, tokens. Pure functions.

A record is a dict written by the locustfile (see autotune/loadgen/locustfile.py):
  phase ("warmup"|"measure"), ok, ttft_s, e2e_s, token_ts (arrival offsets from send, seconds),
  prompt_tokens, completion_tokens, error.
Only successful requests of the measure phase enter latency percentiles; failures are counted apart.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from autotune.config import PERCENTILES
from autotune.sla import limits_of, request_meets
from autotune.sla import tpot_s as call_tpot_s


def percentiles(values: Sequence[float], ps: Iterable[int] = PERCENTILES) -> dict[int, float]:
    """Linear-interpolated percentiles (numpy's default); NaN for an empty sample."""
    arr = np.asarray(values, dtype=float)
    if arr.size == 0:
        return {p: math.nan for p in ps}
    return {p: float(np.percentile(arr, p)) for p in ps}


def quantile_interval(values: Sequence[float], q: float = 0.95, confidence: float = 0.95) -> tuple[float, float]:
    """Distribution-free interval of the q-quantile from order statistics: the ranks (l, u) with
    P(X_(l) <= Q_q < X_(u)) >= confidence under Binomial(n, q) counts below the quantile (Conover). An end
    the sample is too small to reach is -inf / inf: 13 tasks cannot bound a p95 from above (n >= 59 can, at
    95 %), and the interval says so instead of reporting the largest of 13 as if it were the p95."""
    from scipy.stats import binom

    xs = np.sort(np.asarray(values, dtype=float))
    n = xs.size
    if n == 0:
        return math.nan, math.nan
    tail = (1 - confidence) / 2
    lo_rank = int(binom.ppf(tail, n, q))  # X_(lo_rank) (1-based) is below the quantile with prob >= 1 - tail
    hi_rank = int(binom.ppf(1 - tail, n, q)) + 1
    low = float(xs[lo_rank - 1]) if lo_rank >= 1 else -math.inf
    high = float(xs[hi_rank - 1]) if hi_rank <= n else math.inf
    return low, high


def tpot_s(rec: dict[str, Any]) -> float | None:
    """Time per output token after the first, by the SLA rule's formula (autotune/sla.py)."""
    return call_tpot_s(rec["e2e_s"], rec.get("ttft_s"), rec.get("completion_tokens") or 0)


def itls_s(rec: dict[str, Any]) -> list[float]:
    """Inter-token latencies, per token. With speculative decoding one streamed chunk carries several tokens:
    when the stream reports the running token count per chunk (`token_counts`, from vLLM's
    `continuous_usage_stats`), a gap of g seconds that brought k tokens is k inter-token latencies of g/k, so
    spec and non-spec configs compare. Without counts, one chunk is taken as one token."""
    ts = rec.get("token_ts") or []
    counts = rec.get("token_counts") or []
    if len(counts) != len(ts):
        return [b - a for a, b in zip(ts, ts[1:], strict=False)]
    out: list[float] = []
    for (t0, c0), (t1, c1) in zip(zip(ts, counts, strict=True), zip(ts[1:], counts[1:], strict=True), strict=False):
        k = max(1, (c1 or 0) - (c0 or 0))
        out += [(t1 - t0) / k] * k
    return out


def tokens_in_window(records: Iterable[dict[str, Any]], start: float, end: float) -> int:
    """Output tokens that streamed in during [start, end) (absolute times), from every call's token stamps: the
    engine's throughput over a window, not the window's tasks' tokens (those of an overloaded level finish after
    it)."""
    total = 0
    for rec in records:
        stamps, counts, sent = rec.get("token_ts") or [], rec.get("token_counts") or [], rec.get("send_ts")
        if sent is None:
            continue
        previous = 0
        counts = counts if len(counts) == len(stamps) else [None] * len(stamps)
        for ts, count in zip(stamps, counts, strict=True):
            count = previous + 1 if count is None else count  # no usage stats on the chunk: one token per chunk
            if start <= sent + ts < end:
                total += count - previous
            previous = count
    return total


def busy_share(records: Iterable[dict[str, Any]], start: float, end: float) -> float:
    """Share of [start, end) (absolute times) in which at least one FM call was in flight: the union of the calls'
    [send, send + e2e) intervals. NaN for an empty window."""
    spans = sorted((max(start, r["send_ts"]), min(end, r["send_ts"] + r["e2e_s"])) for r in records
                   if r.get("send_ts") is not None and r.get("e2e_s") is not None)
    busy, reach = 0.0, start
    for a, b in spans:
        a = max(a, reach)
        if b > a:
            busy, reach = busy + b - a, b
    return busy / (end - start) if end > start else math.nan


def usd_per_1k(usd_per_hour: float, per_second: float) -> float:
    """$ per 1000 units when the hardware is fully used at `per_second` units/s."""
    if per_second <= 0 or math.isnan(per_second):
        return math.inf
    return usd_per_hour / 3600.0 / per_second * 1000.0


def summarize(
    records: Sequence[dict[str, Any]], window_s: float, sla: dict[str, float | None] | None = None
) -> dict[str, float]:
    """Client-side metrics of the measurement window."""
    sla = sla or {}
    measured = [r for r in records if r.get("phase") == "measure"]
    ok = [r for r in measured if r.get("ok")]
    failed = len(measured) - len(ok)
    out: dict[str, float] = {}
    samples = {
        "ttft": [r["ttft_s"] for r in ok if r.get("ttft_s") is not None],
        "tpot": [t for r in ok if (t := tpot_s(r)) is not None],
        "itl": [x for r in ok for x in itls_s(r)],
        "e2e": [r["e2e_s"] for r in ok],
    }
    for lat, secs in samples.items():
        for p, v in percentiles(secs).items():
            out[f"p{p}_{lat}_ms"] = v * 1000.0
        out[f"mean_{lat}_ms"] = float(np.mean(secs)) * 1000.0 if secs else math.nan
    out_tokens = sum(r.get("completion_tokens") or 0 for r in ok)
    out["requests_ok"] = float(len(ok))
    out["requests_failed"] = float(failed)
    out["error_rate"] = failed / len(measured) if measured else math.nan
    out["requests_per_s"] = len(ok) / window_s
    out["output_tokens_per_s"] = out_tokens / window_s
    out["input_tokens_per_request"] = (
        float(np.mean([r.get("prompt_tokens") or 0 for r in ok])) if ok else math.nan
    )
    out["output_tokens_per_request"] = out_tokens / len(ok) if ok else math.nan
    out["truncated_rate"] = sum(r.get("finish_reason") == "length" for r in ok) / len(ok) if ok else math.nan
    met = sum(1 for r in measured if request_meets(r, limits_of(sla)))
    out["sla_attainment"] = met / len(measured) if measured else math.nan
    out["goodput_rps"] = met / window_s
    out["achieved_rate_rps"] = len(measured) / window_s
    return out
