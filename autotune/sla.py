"""SLA attainment of one load level, judged with a Wilson interval, not a point estimate. Pure.

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


def task_meets(task: dict, sla: dict[str, float | None]) -> bool:
    """DistServe semantics at application level: a task is good only if it completed, within `task_ms`, and
    every FM call of it met the per-call SLOs that are set (`ttft_ms`, `tpot_ms`)."""
    if not task.get("ok"):
        return False
    if sla.get("task_ms") is not None and task["latency_s"] * 1000.0 > sla["task_ms"]:
        return False
    for span in task.get("spans") or []:
        if span.get("kind") != "fm":
            continue
        ttft = span.get("ttft_s")
        if sla.get("ttft_ms") is not None and ttft is not None and ttft * 1000.0 > sla["ttft_ms"]:
            return False
        tokens = span.get("tokens_out") or 0
        tpot_ms = (span["ms"] / 1000.0 - ttft) / (tokens - 1) * 1000.0 if ttft is not None and tokens > 1 else None
        if sla.get("tpot_ms") is not None and tpot_ms is not None and tpot_ms > sla["tpot_ms"]:
            return False
    return True


def known_miss(task_start: dict, now: float, sla: dict[str, float | None]) -> bool:
    """A task still in flight that is already older than the task SLA will miss it, whatever happens next."""
    origin = task_start.get("scheduled_ts") or task_start["send_ts"]
    return sla.get("task_ms") is not None and (now - origin) * 1000.0 > sla["task_ms"]
