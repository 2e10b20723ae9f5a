"""Which load level to measure next: bracket by doubling, then bisect to a relative tolerance. Pure.

GuideLLM's goodput profile in spirit (a profile decides the next level from the results so far; a strategy runs
one level), on task arrival rate: the capacity of a config is the highest Poisson task rate (tasks/s) whose
level holds the task SLA. A rate, not a concurrency, because an application's users arrive independently of
how fast it answers: a closed loop slows its own arrivals when the server slows, and hides the overload.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class LevelResult:
    rate: float  # offered task rate (tasks/s)
    passed: bool
    valid: bool = True  # False: the load generator could not hold the schedule (its lag or CPU passed a bound)


@dataclass
class CapacitySearch:
    start_rate: float
    tolerance: float = 0.15  # stop when (first failing - last passing) / last passing <= tolerance
    max_levels: int = 6
    max_rate: float = 1e6
    min_rate: float = 0.0  # below this, nothing passed means capacity 0
    levels: list[LevelResult] = field(default_factory=list)
    stop_reason: str = ""

    def record(self, level: LevelResult) -> None:
        self.levels.append(level)

    @property
    def capacity(self) -> float:
        """The highest passing valid rate below the lowest failing one; 0 when nothing passed."""
        ceiling = min((lv.rate for lv in self.levels if lv.valid and not lv.passed), default=float("inf"))
        return max((lv.rate for lv in self.levels if lv.valid and lv.passed and lv.rate < ceiling), default=0.0)

    def next_rate(self) -> float | None:
        """The next level's rate, or None when the search is over (`stop_reason` says why)."""
        if not self.levels:
            return self.start_rate
        if not self.levels[-1].valid:
            self.stop_reason = "generator_limit"  # beyond this rate the numbers would describe the load generator
            return None
        passed = [lv.rate for lv in self.levels if lv.valid and lv.passed]
        failed = [lv.rate for lv in self.levels if lv.valid and not lv.passed]
        low = self.capacity
        high = min((r for r in failed if r > low), default=None)
        if not passed:
            nxt = min(failed) / 2
            if nxt < self.min_rate or nxt <= 0:
                self.stop_reason = "nothing_passed"
                return None
        elif high is None:
            nxt = 2 * max(passed)
            if nxt > self.max_rate:
                self.stop_reason = "max_rate"
                return None
        elif (high - low) / low <= self.tolerance:
            self.stop_reason = "converged"
            return None
        else:
            nxt = (low + high) / 2
        if len(self.levels) >= self.max_levels:
            self.stop_reason = "max_levels" if passed else "nothing_passed"
            return None
        return nxt
