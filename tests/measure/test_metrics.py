"""Metrics maths against hand-computed values."""

from __future__ import annotations

import math

import pytest

from autotune.measure.request_metrics import itls_s, percentiles, summarize, tpot_s, usd_per_1k
from autotune.sla import request_meets as meets_sla


def rec(ttft, e2e, tokens, token_ts=None, ok=True, phase="measure", prompt=10):
    return {"ok": ok, "phase": phase, "ttft_s": ttft, "e2e_s": e2e, "completion_tokens": tokens,
            "prompt_tokens": prompt, "token_ts": token_ts or []}


def test_percentiles_linear_interpolation():
    # 1..5: p50 = 3, p90 = 4 + 0.6*(5-4) = 4.6, p95 = 4.8, p99 = 4.96
    p = percentiles([5, 1, 3, 2, 4])
    assert p == {50: 3.0, 90: pytest.approx(4.6), 95: pytest.approx(4.8), 99: pytest.approx(4.96)}


def test_percentiles_empty_is_nan():
    assert all(math.isnan(v) for v in percentiles([]).values())


def test_tpot_and_itl():
    r = rec(0.5, 2.5, 5, token_ts=[0.5, 1.0, 1.5, 2.5])
    assert tpot_s(r) == pytest.approx(0.5)  # (2.5 - 0.5) / (5 - 1)
    assert itls_s(r) == pytest.approx([0.5, 0.5, 1.0])
    assert tpot_s(rec(0.5, 0.5, 1)) is None  # one token: no TPOT


def test_sla_checks_every_threshold():
    r = rec(0.2, 1.0, 5)  # ttft 200 ms, e2e 1000 ms, tpot 200 ms
    assert meets_sla(r, {"ttft_ms": 300, "e2e_ms": 1000, "tpot_ms": 200})
    assert not meets_sla(r, {"ttft_ms": 199})
    assert not meets_sla(r, {"tpot_ms": 199.9})
    assert not meets_sla(rec(0.2, 1.0, 5, ok=False), {})  # a failure never meets the SLA


def test_summarize_excludes_warmup_and_failures_from_latency():
    records = [
        rec(0.1, 1.0, 11, prompt=10),
        rec(0.3, 3.0, 11, prompt=20),
        rec(9.0, 99.0, 11, phase="warmup"),  # must not count anywhere
        rec(None, 0.5, None, ok=False),  # failed: counted apart
    ]
    m = summarize(records, window_s=2.0, sla={"e2e_ms": 2000})
    assert m["requests_ok"] == 2 and m["requests_failed"] == 1
    assert m["error_rate"] == pytest.approx(1 / 3)
    assert m["p50_e2e_ms"] == pytest.approx(2000.0)
    assert m["p50_ttft_ms"] == pytest.approx(200.0)
    assert m["mean_tpot_ms"] == pytest.approx((90 + 270) / 2)  # (1.0-0.1)/10, (3.0-0.3)/10
    assert m["requests_per_s"] == pytest.approx(1.0)
    assert m["output_tokens_per_s"] == pytest.approx(11.0)
    assert m["input_tokens_per_request"] == pytest.approx(15.0)
    assert m["sla_attainment"] == pytest.approx(1 / 3)  # only the first of 3 measured requests
    assert m["goodput_rps"] == pytest.approx(0.5)
    assert m["achieved_rate_rps"] == pytest.approx(1.5)


def test_cost_per_1k():
    # $3.6/h = $0.001/s; 2 req/s -> $0.0005 per request -> $0.5 per 1k
    assert usd_per_1k(3.6, 2.0) == pytest.approx(0.5)
    assert usd_per_1k(3.6, 0.0) == math.inf


def test_itl_is_per_token_when_chunks_carry_several():
    from autotune.measure.request_metrics import itls_s

    spec = {"token_ts": [0.10, 0.16, 0.25], "token_counts": [1, 4, 5]}  # 3 tokens in 60 ms, then 1 in 90 ms
    assert itls_s(spec) == pytest.approx([0.02, 0.02, 0.02, 0.09])
    assert itls_s({"token_ts": [0.1, 0.2, 0.4]}) == pytest.approx([0.1, 0.2])  # no counts: a chunk is a token


def test_gauges_average_shares_and_sum_counts_over_engine_processes():
    from autotune.engines.prometheus import gauges, window_deltas
    from autotune.engines.prometheus import parse_metrics as parse

    text = ('vllm:kv_cache_usage_perc{engine="0"} 0.2\nvllm:kv_cache_usage_perc{engine="1"} 0.6\n'
            'vllm:num_requests_waiting{engine="0"} 3\nvllm:num_requests_waiting{engine="1"} 4\n')
    g = gauges(text)
    assert g["vllm:kv_cache_usage_perc"] == pytest.approx(0.4) and g["vllm:num_requests_waiting"] == 7
    assert window_deltas({}, parse(text))["server_kv_cache_usage_perc"] == pytest.approx(0.4)


def test_probe_summaries():
    from autotune.loadgen.probes import gauge_summary, lag_ms

    s = gauge_summary([{"vllm:kv_cache_usage_perc": 0.2, "vllm:num_requests_waiting": 0},
                       {"vllm:kv_cache_usage_perc": 0.4, "vllm:num_requests_waiting": 6}])
    assert s["server_kv_cache_usage_mean"] == pytest.approx(0.3) and s["server_waiting_max"] == 6
    assert "server_running_mean" not in s
    assert lag_ms([0.001] * 99 + [0.030], 100) == pytest.approx(30.0) and lag_ms([], 99) is None


def test_tokens_in_window_counts_only_tokens_that_streamed_in_during_it():
    from autotune.measure.request_metrics import tokens_in_window

    recs = [{"send_ts": 100.0, "token_ts": [0.5, 1.0, 3.0], "token_counts": [1, 3, 4]},  # 4 tokens at 100.5-103
            {"send_ts": 101.5, "token_ts": [0.2, 2.0], "token_counts": [2, 5]},  # 2 at 101.7, 3 at 103.5
            {"send_ts": None, "token_ts": [0.1], "token_counts": [9]},  # never sent: nothing
            {"send_ts": 99.0, "token_ts": [1.5, 2.5, 3.5], "token_counts": [None, None, None]}]  # no usage: 1 each
    assert tokens_in_window(recs, 100.0, 102.0) == 1 + 2 + 2 + 2  # (100.5: 1, 101.0: 2) + 101.7: 2 + 100.5, 101.5
    assert tokens_in_window(recs, 102.0, 104.0) == 1 + 3 + 1
    assert tokens_in_window(recs, float("nan"), float("nan")) == 0
