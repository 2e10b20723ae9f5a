"""/metrics parsing and window deltas."""

from __future__ import annotations

import math

import pytest

from autotune.engines.prometheus import histogram_delta, window_deltas
from autotune.engines.prometheus import parse_metrics as parse

BEFORE = """# TYPE vllm:generation_tokens counter
vllm:generation_tokens_total{engine="0",model_name="m"} 100.0
vllm:num_preemptions_total{engine="0",model_name="m"} 1.0
vllm:time_to_first_token_seconds_sum{engine="0",model_name="m"} 2.0
vllm:time_to_first_token_seconds_count{engine="0",model_name="m"} 10.0
vllm:time_to_first_token_seconds_bucket{engine="0",le="0.1",model_name="m"} 4.0
vllm:time_to_first_token_seconds_bucket{engine="0",le="+Inf",model_name="m"} 10.0
vllm:kv_cache_usage_perc{engine="0",model_name="m"} 0.1
"""
AFTER = """# TYPE vllm:generation_tokens counter
vllm:generation_tokens_total{engine="0",model_name="m"} 350.0
vllm:num_preemptions_total{engine="0",model_name="m"} 3.0
vllm:time_to_first_token_seconds_sum{engine="0",model_name="m"} 5.0
vllm:time_to_first_token_seconds_count{engine="0",model_name="m"} 20.0
vllm:time_to_first_token_seconds_bucket{engine="0",le="0.1",model_name="m"} 9.0
vllm:time_to_first_token_seconds_bucket{engine="0",le="+Inf",model_name="m"} 20.0
vllm:kv_cache_usage_perc{engine="0",model_name="m"} 0.4
vllm:spec_decode_num_draft_tokens_total{engine="0",model_name="m"} 40.0
vllm:spec_decode_num_accepted_tokens_total{engine="0",model_name="m"} 10.0
"""


def test_window_deltas():
    d = window_deltas(parse(BEFORE), parse(AFTER))
    assert d["server_generation_tokens"] == 250.0
    assert d["server_preemptions"] == 2.0
    assert d["server_ttft_mean_ms"] == pytest.approx(300.0)  # (5-2)/(20-10) s
    assert d["server_kv_cache_usage_perc"] == 0.4  # a gauge: end-of-window value
    assert d["spec_draft_tokens"] == 40.0 and d["spec_acceptance_rate"] == 0.25


def test_histogram_delta_and_empty_window():
    assert histogram_delta(parse(BEFORE), parse(AFTER), "vllm:time_to_first_token_seconds") == {
        "0.1": 5.0, "+Inf": 10.0}
    d = window_deltas(parse(BEFORE), parse(BEFORE))
    assert math.isnan(d["server_ttft_mean_ms"]) and math.isnan(d["spec_acceptance_rate"])


def test_a_counter_reset_within_the_window_counts_from_zero():
    from autotune.engines.prometheus import counter_delta, window_deltas

    assert counter_delta(100.0, 130.0) == 30.0 and counter_delta(100.0, 7.0) == 7.0
    d = window_deltas({"vllm:generation_tokens_total": 500.0}, {"vllm:generation_tokens_total": 40.0})
    assert d["server_generation_tokens"] == 40.0
