"""One rule decides "meets the SLA" (autotune/sla.py): capacity's level verdict, the load generator's early stop,
the task and request attainment metrics, and so the pick policies, export, report and nightly that read them.
One task list, every caller: they must agree."""

from __future__ import annotations

import math
import random
from types import SimpleNamespace

import pytest

from autotune.measure.request_metrics import summarize
from autotune.measure.task_metrics import summarize_tasks
from autotune.sla import judge, level_counts, limits_of, request_meets, task_meets

LIMITS = {"task_ms": 2000.0, "ttft_ms": 400.0, "tpot_ms": 80.0, "e2e_ms": 1500.0}


def _tasks(n: int, seed: int) -> list[dict]:
    """Tasks of one to three FM calls whose latencies straddle every limit, some failed, some without a token."""
    rng = random.Random(seed)
    tasks = []
    for i in range(n):
        spans = []
        for _ in range(rng.randint(1, 3)):
            tokens = rng.choice([1, 2, 12, 30])
            ttft = None if rng.random() < 0.05 else rng.uniform(0.05, 0.6)
            ms = ((ttft or 0.0) + tokens * rng.uniform(0.02, 0.12)) * 1000.0
            spans.append({"kind": "fm", "node": "call", "ttft_s": ttft, "ms": ms, "tokens_out": tokens, "tokens_in": 9,
                          "start": 0.0, "end": ms / 1000.0})
        latency = sum(s["ms"] for s in spans) / 1000.0 + rng.uniform(0.0, 0.5)
        tasks.append({"n": i, "id": f"t{i}", "phase": "measure", "ok": rng.random() > 0.1, "latency_s": latency,
                      "score": 1.0, "fm_calls": len(spans), "tokens_in": 10, "tokens_out": 5, "spans": spans,
                      "parses": [], "critical_path": [], "send_ts": float(i)})
    return tasks


def _requests(tasks: list[dict]) -> list[dict]:
    """Each FM call of the tasks as a request record, as the load generator writes both."""
    return [{"phase": "measure", "ok": t["ok"], "ttft_s": s["ttft_s"], "e2e_s": s["ms"] / 1000.0,
             "completion_tokens": s["tokens_out"], "token_ts": [], "send_ts": t["send_ts"]}
            for t in tasks for s in t["spans"]]


@pytest.mark.parametrize("seed", range(5))
def test_every_caller_agrees_on_one_task_list(seed):
    tasks = _tasks(80, seed)
    good = [task_meets(t, LIMITS) for t in tasks]
    assert 0 < sum(good) < len(tasks), "the list must hold both kinds for the test to mean anything"
    # the task metrics every policy, export, report and nightly read
    m = summarize_tasks(tasks, window_s=10.0, sla=LIMITS)
    assert m["task_sla_attainment"] == pytest.approx(sum(good) / len(tasks))
    assert m["task_goodput_tps"] == pytest.approx(sum(good) / 10.0)
    # the load generator's running count (nothing in flight) and capacity's verdict
    met, missed, pending = level_counts(tasks, [], now=1e9, limits=LIMITS)
    assert (met, missed, pending) == (sum(good), len(tasks) - sum(good), 0)
    assert judge(met, met + missed, 0.95).attainment == pytest.approx(m["task_sla_attainment"])
    # the space's `sla:` block and a plain mapping give the same limits
    space_sla = SimpleNamespace(**LIMITS, attainment=0.95)
    assert limits_of(space_sla) == limits_of(LIMITS) == LIMITS
    # a request meets the SLA exactly when the same call inside a task would
    requests = _requests(tasks)
    call_verdicts = [task_meets({"ok": t["ok"], "latency_s": 0.0, "spans": [s]}, {**LIMITS, "task_ms": None})
                     for t in tasks for s in t["spans"]]
    assert [request_meets(r, LIMITS) for r in requests] == call_verdicts
    assert summarize(requests, 10.0, LIMITS)["sla_attainment"] == pytest.approx(sum(call_verdicts) / len(requests))


def test_a_task_in_flight_past_its_limit_is_a_known_miss_in_the_running_count():
    finished = _tasks(10, 1)
    in_flight = [{"send_ts": 100.0, "scheduled_ts": 99.0}, {"send_ts": 103.0, "scheduled_ts": None}]
    met, missed, pending = level_counts(finished, in_flight, now=103.5, limits=LIMITS)
    good = sum(task_meets(t, LIMITS) for t in finished)
    assert (met, missed, pending) == (good, 10 - good + 1, 1)  # 4.5 s old: a miss; 0.5 s old: pending


def test_unset_limits_are_not_checked():
    tasks = _tasks(40, 2)
    ok = [t for t in tasks if t["ok"]]
    assert all(task_meets(t, {}) for t in ok) and not any(task_meets(t, {}) for t in tasks if not t["ok"])
    assert summarize_tasks(tasks, 10.0)["task_sla_attainment"] == pytest.approx(len(ok) / len(tasks))
    assert math.isnan(summarize_tasks([], 10.0)["task_sla_attainment"])
