"""The one rule for "meets the SLA", and SLA attainment judged with a Wilson interval. Pure.

Every caller decides here: capacity levels (and the load generator's early stop), the per-task and per-request
attainment and goodput metrics, and through them the pick policies, export, report and nightly. DistServe
semantics at application level: a task meets the SLA when it completed within `task_ms` and every FM call of it
met the per-call limits that are set (`ttft_ms`, `tpot_ms`, `e2e_ms`); one FM request meets them the same way.
TPOT is (e2e - ttft) / (tokens - 1); a call without a first token fails a TTFT limit, one with a single token has
no TPOT to miss.

A level's tasks are the ones that started in its window; a failed or abandoned task is a miss. While the level
runs, a task still in flight that is already older than the task SLA is a *known* miss: overload shows within
one SLA period, so a failing level costs seconds, not a window.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Verdict:
    met: int
    judged: int
    attainment: float
    ci_low: float
    ci_high: float
    passed: bool  # the level holds the SLA (resolved, or by its point estimate when unresolved)
    resolved: bool  # the interval lies entirely on one side of the target

    def row(self) -> dict[str, float | bool]:
        return {"met": self.met, "judged": self.judged, "attainment": self.attainment,
                "attainment_ci_low": self.ci_low, "attainment_ci_high": self.ci_high, "passed": self.passed,
                "resolved": self.resolved}


def wilson(met: int, judged: int, confidence: float) -> tuple[float, float]:
    """Two-sided Wilson score interval of met/judged; (0, 1) when nothing was judged. The closed form of
    scipy's `binomtest(...).proportion_ci(method="wilson")` (a test holds them equal): the load generator judges
    its level as it runs, and importing scipy.stats there cost a second of every level's start; scipy.special
    costs a tenth of that."""
    if judged <= 0:
        return 0.0, 1.0
    from scipy.special import ndtri

    z = float(ndtri(0.5 + confidence / 2.0))
    p, z2 = met / judged, z * z
    centre = (p + z2 / (2 * judged)) / (1 + z2 / judged)
    half = z / (1 + z2 / judged) * math.sqrt(p * (1 - p) / judged + z2 / (4 * judged * judged))
    # the ends are exact where the sample is all misses or all met: a rounded 0.9999999999999999 would fail
    # a perfect level against an attainment target of 1.0
    low = 0.0 if met <= 0 else max(0.0, centre - half)
    high = 1.0 if met >= judged else min(1.0, centre + half)
    return low, high


def judge(met: int, judged: int, target: float, confidence: float = 0.9) -> Verdict:
    """Pass when the interval lies above the target, fail when below; in between (unresolved) the point
    estimate decides, and the verdict says it was unresolved."""
    low, high = wilson(met, judged, confidence)
    point = met / judged if judged else math.nan
    if low >= target:
        return Verdict(met, judged, point, low, high, True, True)
    if high < target:
        return Verdict(met, judged, point, low, high, False, True)
    return Verdict(met, judged, point, low, high, judged > 0 and point >= target, False)


def early_stop(met: int, missed: int, pending: int, target: float, confidence: float, min_judged: int) -> str | None:
    """While a level runs: `pass` when even counting every pending task as a miss the interval clears the
    target; `fail` when even counting every pending task as met it stays below; else None (keep measuring)."""
    judged = met + missed + pending
    if judged < min_judged:
        return None
    if wilson(met, judged, confidence)[0] >= target:
        return "pass"
    if wilson(met + pending, judged, confidence)[1] < target:
        return "fail"
    return None


def straddles(met: int, missed: int, target: float, confidence: float) -> bool:
    """A level whose verdict is a coin flip: it has misses, and its interval still holds the target. Such a level
    is continued (`Capacity.extend_s`): a burst's few misses decided verdicts near capacity, and the same config's
    capacity spread x1.6 over fresh engines. A level without a miss is not: its point estimate is 1, and proving
    0.95 without a miss takes 52 tasks, a long window at every passing rate."""
    if missed <= 0:
        return False
    low, high = wilson(met, met + missed, confidence)
    return low < target <= high


LIMITS = ("task_ms", "ttft_ms", "tpot_ms", "e2e_ms")


def limits_of(sla) -> dict[str, float | None]:
    """The thresholds of a space's `sla:` block (or a mapping) as the dict every rule here takes."""
    get = sla.get if isinstance(sla, dict) else lambda k: getattr(sla, k, None)
    return {k: get(k) for k in LIMITS}


def tpot_s(e2e_s: float, ttft_s: float | None, tokens: int) -> float | None:
    """Time per output token after the first, or None (no first token, or a single token)."""
    return (e2e_s - ttft_s) / (tokens - 1) if ttft_s is not None and tokens > 1 else None


def call_meets(ttft_s: float | None, e2e_s: float, tokens: int, limits: dict[str, float | None]) -> bool:
    """One FM call against the per-call limits that are set."""
    if limits.get("ttft_ms") is not None and (ttft_s is None or ttft_s * 1000.0 > limits["ttft_ms"]):
        return False
    if limits.get("e2e_ms") is not None and e2e_s * 1000.0 > limits["e2e_ms"]:
        return False
    tpot = tpot_s(e2e_s, ttft_s, tokens)
    return limits.get("tpot_ms") is None or tpot is None or tpot * 1000.0 <= limits["tpot_ms"]


def request_meets(rec: dict, limits: dict[str, float | None]) -> bool:
    """An FM request record (requests.jsonl): it succeeded and met the per-call limits."""
    return bool(rec.get("ok")) and call_meets(rec.get("ttft_s"), rec.get("e2e_s") or 0.0,
                                              rec.get("completion_tokens") or 0, limits)


def task_meets(task: dict, limits: dict[str, float | None]) -> bool:
    """A task record (tasks.jsonl): it completed, within `task_ms`, and every FM call of it met the per-call
    limits."""
    if not task.get("ok"):
        return False
    if limits.get("task_ms") is not None and task["latency_s"] * 1000.0 > limits["task_ms"]:
        return False
    return all(call_meets(s.get("ttft_s"), s["ms"] / 1000.0, s.get("tokens_out") or 0, limits)
               for s in task.get("spans") or [] if s.get("kind") == "fm")


def level_counts(finished: list[dict], in_flight: list[dict], now: float,
                 limits: dict[str, float | None]) -> tuple[int, int, int]:
    """(met, missed, pending) of a running level's measured tasks: a finished task by the rule above, one in
    flight that is already older than `task_ms` a known miss, the rest pending."""
    met = sum(task_meets(t, limits) for t in finished)
    known = sum(known_miss(t, now, limits) for t in in_flight)
    return met, len(finished) - met + known, len(in_flight) - known


def known_miss(task_start: dict, now: float, sla: dict[str, float | None]) -> bool:
    """A task still in flight that is already older than the task SLA will miss it, whatever happens next."""
    origin = task_start.get("scheduled_ts") or task_start["send_ts"]
    return sla.get("task_ms") is not None and (now - origin) * 1000.0 > sla["task_ms"]
