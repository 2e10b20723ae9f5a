"""vLLM /metrics snapshots -> deltas over the measurement window (parsing by prometheus_client)."""

from __future__ import annotations

import math
from collections import defaultdict

from prometheus_client.parser import text_string_to_metric_families

# sample name (label-summed) -> our metric key, for counters whose window delta we report
COUNTERS = {
    "vllm:generation_tokens_total": "server_generation_tokens",
    "vllm:prompt_tokens_total": "server_prompt_tokens",
    "vllm:num_preemptions_total": "server_preemptions",
    "vllm:spec_decode_num_draft_tokens_total": "spec_draft_tokens",
    "vllm:spec_decode_num_accepted_tokens_total": "spec_accepted_tokens",
    "vllm:time_to_first_token_seconds_sum": "_ttft_sum",
    "vllm:time_to_first_token_seconds_count": "_ttft_count",
    "vllm:e2e_request_latency_seconds_sum": "_e2e_sum",
    "vllm:e2e_request_latency_seconds_count": "_e2e_count",
}
GAUGES = {"vllm:kv_cache_usage_perc": "server_kv_cache_usage_perc", "vllm:num_requests_waiting": "server_waiting"}


MEAN_GAUGES = {"vllm:kv_cache_usage_perc"}  # a share per engine process: averaged over them, never summed


def gauges(text: str) -> dict[str, float]:
    """Engine load gauges of one scrape: KV-cache usage averaged over engine processes (label sets), requests
    running and waiting summed over them."""
    sums: dict[str, list[float]] = defaultdict(list)
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name in ("vllm:kv_cache_usage_perc", "vllm:num_requests_running", "vllm:num_requests_waiting"):
                sums[s.name].append(s.value)
    return {k: (sum(v) / len(v) if k in MEAN_GAUGES else sum(v)) for k, v in sums.items() if v}


def parse_metrics(text: str) -> dict[str, float]:
    """Sum samples over labels (one engine, one model) -> {sample name: value}; histogram buckets kept by le."""
    out: dict[str, float] = defaultdict(float)
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            key = s.name
            if s.name.endswith("_bucket"):
                key = f"{s.name}{{le={s.labels.get('le')}}}"
            out[key] += s.value
            if s.name in MEAN_GAUGES:
                out[f"_samples:{s.name}"] += 1  # how many engine processes reported it (for the mean)
    return dict(out)


def counter_delta(before: float, after: float) -> float:
    """A counter that went down was reset (the engine restarted within the window): it counted from 0 since."""
    return after if after < before else after - before


def window_deltas(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """Counter deltas and end-of-window gauges, plus derived server-side TTFT mean and spec acceptance."""
    d: dict[str, float] = {}
    for name, key in COUNTERS.items():
        if name in after:
            d[key] = counter_delta(before.get(name, 0.0), after[name])
    for name, key in GAUGES.items():
        if name in after:
            d[key] = after[name] / max(1, after.get(f"_samples:{name}", 1)) if name in MEAN_GAUGES else after[name]
    n = d.pop("_ttft_count", 0.0)
    s = d.pop("_ttft_sum", 0.0)
    d["server_ttft_mean_ms"] = s / n * 1000.0 if n else math.nan
    n = d.pop("_e2e_count", 0.0)
    s = d.pop("_e2e_sum", 0.0)
    d["server_e2e_mean_ms"] = s / n * 1000.0 if n else math.nan
    drafted = d.get("spec_draft_tokens", 0.0)
    d["spec_acceptance_rate"] = d.get("spec_accepted_tokens", 0.0) / drafted if drafted else math.nan
    return d


def histogram_delta(before: dict[str, float], after: dict[str, float], family: str) -> dict[str, float]:
    """Cumulative bucket counts of a histogram over the window: {le: count}."""
    prefix = f"{family}_bucket{{le="
    return {k[len(prefix):-1]: counter_delta(before.get(k, 0.0), v) for k, v in after.items() if k.startswith(prefix)}
