"""The catalogue of every metric a trial can report, with what it means; objectives and constraints must name
one of these (config/space.py), and MLflow and the report describe metrics from here."""

from __future__ import annotations

PERCENTILES = (50, 90, 95, 99)
LATENCIES = ("ttft", "tpot", "itl", "e2e")

# request-level metrics (measure/request_metrics.py)
TRIAL_METRICS: dict[str, str] = {
    **{f"p{p}_{lat}_ms": f"p{p} {lat} latency (ms), client side" for p in PERCENTILES for lat in LATENCIES},
    **{f"mean_{lat}_ms": f"mean {lat} latency (ms), client side" for lat in LATENCIES},
    "requests_ok": "successful requests in the measurement window",
    "requests_failed": "failed requests in the measurement window",
    "error_rate": "failed / all requests in the measurement window",
    "requests_per_s": "successful requests per second",
    "output_tokens_per_s": "generated tokens per second (successful requests)",
    "input_tokens_per_request": "mean prompt tokens per request",
    "output_tokens_per_request": "mean completion tokens per request",
    "truncated_rate": "share of successful requests cut off by max_tokens (finish_reason length)",
    "sla_attainment": "share of requests (failures count as misses) meeting every per-call SLA limit (sla.py)",
    "goodput_rps": "SLA-meeting requests per second",
    "usd_per_1k_requests": "hardware $/h turned into $ per 1000 requests at the measured throughput",
    "achieved_rate_rps": "FM calls sent per second in the measurement window (calls, not tasks)",
    "loadgen_cpu_s": "CPU seconds used by the load generator process",
    "loadgen_cpu_share": "load generator CPU seconds per wall second (1.0 = one core)",
    "loop_lag_p99_ms": "p99 of how late the load generator's event loop woke (CPU work on it delays timestamps; ms)",
    "loop_lag_max_ms": "the worst event-loop stall of the load generator in the run (ms)",
    "server_ttft_mean_ms": "server-side mean TTFT from /metrics deltas (ms)",
    "server_generation_tokens": "generation tokens counted by the server in the window",
    "server_preemptions": "preemptions in the window",
    "server_kv_cache_usage_perc": "KV-cache usage at the end of the window (0..1, mean over engine processes)",
    "server_kv_cache_usage_mean": "KV-cache usage polled at ~1 Hz through the window: mean (0..1)",
    "server_kv_cache_usage_max": "KV-cache usage polled at ~1 Hz through the window: max (0..1)",
    "server_running_mean": "requests running in the engine, polled at ~1 Hz through the window: mean",
    "server_waiting_mean": "requests waiting in the engine's queue, polled at ~1 Hz through the window: mean",
    "server_waiting_max": "requests waiting in the engine's queue, polled at ~1 Hz through the window: max",
    "spec_draft_tokens": "speculative tokens drafted in the window",
    "spec_accepted_tokens": "speculative tokens accepted in the window",
    "spec_acceptance_rate": "accepted / drafted speculative tokens",
    "startup_s": "engine launch to /health OK (s); 0 when the trial reused a running engine",
    "engine_reused": "1 when the trial reused the previous trial's engine (only client knobs changed)",
    "measure_s": "length of the measurement window (s)",
    "trial_wall_s": "whole trial: launch, warmup, window, drain, teardown, scoring (s)",
    "measure_share": "measure_s / trial_wall_s: the share of trial time spent measuring",
}

# task-level metrics (measure/task_metrics.py, measure/levels.py, search/trial.py)
TASK_METRICS: dict[str, str] = {
    **{f"p{p}_task_ms": f"p{p} end-to-end task latency (ms)" for p in (50, 90, 95, 99)},
    "mean_task_ms": "mean end-to-end task latency (ms)",
    "tasks_ok": "completed tasks in the measurement window",
    "task_error_rate": "failed / all tasks in the measurement window",
    "tasks_per_s": "completed tasks per second",
    "task_sla_attainment": "share of tasks (failures count as misses) meeting the SLA: within sla.task_ms, every FM "
                           "call within its ttft/tpot/e2e limits (the one rule, autotune/sla.py)",
    "task_goodput_tps": "tasks per second that met the SLA (the same rule)",
    "fm_calls_per_task": "FM calls per completed task",
    "input_tokens_per_task": "prompt tokens per completed task (all its FM calls)",
    "output_tokens_per_task": "completion tokens per completed task (all its FM calls)",
    "quality": "mean score over the study's fixed evaluation set, each item once, failures 0 (0..1)",
    "quality_ci_low": "lower bound of the 95% bootstrap interval (over evaluation items) on quality",
    "quality_ci_high": "upper bound of the 95% bootstrap interval (over evaluation items) on quality",
    "eval_items": "items in the study's fixed evaluation set (workload `eval_items`, default 40)",
    "eval_failed_items": "evaluation items whose graded attempt failed, timed out or was abandoned (scored 0)",
    "eval_completion_items": "evaluation items the measured loads did not reach, run by the completion pass",
    "eval_missing_items": "evaluation items no attempt reached (scored 0; nonzero when the completion pass broke)",
    "eval_completion_s": "wall seconds of the evaluation completion pass",
    "validity_rate": "share of FM replies that parsed strictly in the output format on the first try, every "
                     "labelled field holding one of its declared labels",
    "answer_complete_rate": "share of tasks whose final answer has every field (after repair)",
    "repair_cpu_rate": "share of FM replies salvaged by CPU repair",
    "reask_rate": "share of FM replies that needed a reask call",
    "reask_success_rate": "share of reask calls whose reply parsed",
    "reask_ms_per_task": "time spent in reask calls per task (ms)",
    "reask_tokens_per_task": "prompt + completion tokens of reask calls per task",
    "parse_ms_per_task": "time spent parsing/salvaging replies per task (ms, CPU)",
    "judge_calls_per_task": "judge calls per task (architecture judge)",
    "cache_hit_rate": "share of tasks answered from the semantic cache",
    "cache_false_hit_rate": "share of cache hits scoring lower than the fresh answer they reuse",
    "cache_saved_ms_per_task": "latency saved by the cache per task: hit rate x (miss - hit latency) (ms)",
    "cache_lookup_ms": "mean semantic cache lookup time, embedding included (ms)",
    "critical_path_dominant_share": "share of p95-tail task time spent in the node that dominates it",
    "usd_per_1k_tasks": "$ per 1000 tasks: self-hosted hardware $/h at capacity (capacity protocol; else at the "
                        "measured rate), plus API tokens per task at the API's prices",
    "usd_per_1k_tasks_hosted": "the self-hosted part of usd_per_1k_tasks (hardware hours over capacity)",
    "usd_per_1k_tasks_api": "the API part of usd_per_1k_tasks (input and output tokens per task at its prices)",
    "target_task_rate": "offered task arrival rate, tasks/s (open loop; NaN in closed loop)",
    "achieved_task_rate": "tasks started per second in the measurement window (compare with target_task_rate)",
    "schedule_lag_p95_ms": "p95 of how late tasks started after their scheduled arrival (open loop; ms)",
    "schedule_lag_max_ms": "the latest start after a scheduled arrival (open loop; ms)",
    "abandoned_tasks": "tasks of the window still in flight when the drain ended (counted as failures)",
    "capacity_tps": "capacity at SLA: the highest task rate (tasks/s, one replica) whose level held the SLA",
    "p95_task_ms_at_load": "p95 task latency at the workload's stated operating load (capacity.start_rate)",
    "operating_rate": "the stated operating load (tasks/s) the *_at_load metrics are read at",
    "capacity_levels": "load levels the capacity search measured",
    "capacity_search_s": "wall seconds the capacity search spent on its levels",
    "loadgen_standby_wait_s": "seconds levels waited for their load generators to import (a reused engine)",
    "traces_logged": "sampled tasks written as MLflow traces (p95 tail + typical; 0 when writing them failed)",
    "trace_write_s": "seconds spent writing the task traces after the window (not part of any measurement)",
    "loadgen_standby_dropped": "standby load generators stopped for not importing within 30 s (their loads "
                               "started fresh processes)",
}

KNOWN_METRICS = {**TRIAL_METRICS, **TASK_METRICS}
