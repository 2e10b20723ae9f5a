"""Which load level to measure next: find a bracket around the capacity, then narrow it to a stated relative
resolution. Pure.

GuideLLM's goodput profile in spirit (a profile decides the next level from the results so far; a strategy runs
one level), on task arrival rate: the capacity of a config is the highest Poisson task rate (tasks/s) whose
level holds the task SLA. A rate, not a concurrency, because an application's users arrive independently of
how fast it answers: a closed loop slows its own arrivals when the server slows, and hides the overload.

The answer is a bracket [last passing, first failing). The search ends when first failing / last passing
<= 1 + `tolerance` (`converged`), or says why it could not: `max_rate` (everything up to it passed),
`generator_limit` (the load generator could not hold a level), `nothing_passed` (capacity 0) or `max_levels`
(the level budget ran out first: the bracket is wider than asked, and the trial says so). The trial may also
end it early (`quality_floor`: the config's quality is already certain to break the space's floor, so its
capacity would buy nothing; the bracket stays as wide as the levels left it).

With a first estimate (`guess`, from what the operating-load level measured: see autotune.measure.levels), the
levels after the first gallop out from it on a log scale, steps growing (1 + tolerance)^2, ^4, ^8 ... while the
verdicts agree, so a good estimate is bracketed in two levels and converged in three. Without one, the rate
doubles from `start_rate`. Inside a bracket the next level is its geometric midpoint: the resolution is a
ratio, so halving the log width is what narrows it fastest.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

_EPS = 1e-9


@dataclass
class LevelResult:
    rate: float  # offered task rate (tasks/s)
    passed: bool
    valid: bool = True  # False: the load generator could not hold the schedule (its lag or CPU passed a bound)


@dataclass
class CapacitySearch:
    start_rate: float
    tolerance: float = 0.1  # stop when first failing / last passing <= 1 + tolerance
    max_levels: int = 8
    max_rate: float = 1e6
    min_rate: float = 0.0  # below this, nothing passed means capacity 0
    guess: float | None = None  # a first estimate of the capacity, tried right after the first level
    levels: list[LevelResult] = field(default_factory=list)
    stop_reason: str = ""

    def record(self, level: LevelResult) -> None:
        self.levels.append(level)

    @property
    def capacity(self) -> float:
        """The highest passing valid rate below the lowest failing one; 0 when nothing passed."""
        ceiling = min((lv.rate for lv in self.levels if lv.valid and not lv.passed), default=math.inf)
        return max((lv.rate for lv in self.levels if lv.valid and lv.passed and lv.rate < ceiling), default=0.0)

    @property
    def bracket(self) -> tuple[float, float]:
        """(capacity, the lowest failing rate above it): the true capacity lies in [low, high). `high` is inf
        when no level above the capacity failed (a search that stopped at max_rate or the generator's limit)."""
        low = self.capacity
        return low, min((lv.rate for lv in self.levels if lv.valid and not lv.passed and lv.rate > low),
                        default=math.inf)

    @property
    def resolved(self) -> bool:
        """The bracket is as narrow as asked, or cannot be narrower for a stated reason (a rate limit, or
        capacity 0 below `min_rate`)."""
        low, high = self.bracket
        if low > 0 and high < math.inf:
            return high / low <= 1 + self.tolerance + _EPS
        return self.stop_reason in ("max_rate", "generator_limit", "nothing_passed")

    def next_rate(self) -> float | None:
        """The next level's rate, or None when the search is over (`stop_reason` says why)."""
        if not self.levels:
            return self.start_rate
        if not self.levels[-1].valid:
            self.stop_reason = "generator_limit"  # beyond this rate the numbers would describe the load generator
            return None
        low, high = self.bracket
        if low > 0 and high < math.inf and high / low <= 1 + self.tolerance + _EPS:
            self.stop_reason = "converged"
            return None
        nxt = self._candidate(low, high)
        if nxt is None:
            return None
        if len(self.levels) >= self.max_levels:
            self.stop_reason = "max_levels"
            return None
        return nxt

    def _candidate(self, low: float, high: float) -> float | None:
        tried = {lv.rate for lv in self.levels}
        guess = self.guess if self.guess and math.isfinite(self.guess) else None
        if guess is not None and guess not in tried and low < guess < high:
            return min(guess, self.max_rate)
        step = self._step()
        if low <= 0:  # nothing passed yet: step down from the lowest failing rate, to min_rate itself at most
            nxt = high / step
            if nxt < self.min_rate or nxt <= 0:
                if self.min_rate > 0 and self.min_rate not in tried and high > self.min_rate:
                    return self.min_rate  # capacity 0 is a claim about min_rate: test it, as max_rate is
                self.stop_reason = "nothing_passed"
                return None
            return nxt
        if high == math.inf:  # nothing failed above the capacity yet: step up
            if low >= self.max_rate:
                self.stop_reason = "max_rate"
                return None
            return min(low * step, self.max_rate)
        middle = math.sqrt(low * high)
        if self.guess is None:
            return middle
        # gallop from the level just measured while it is nearer than the midpoint (the estimate was near)
        last = self.levels[-1]
        near = last.rate * step if last.passed else last.rate / step
        return near if low < near < high and abs(math.log(near / last.rate)) < abs(math.log(middle / last.rate)) \
            else middle

    def _step(self) -> float:
        """2 without an estimate; with one, (1 + tolerance)^2 growing to ^4, ^8 ... with each further level
        after the first whose verdict agrees with the one before it."""
        if self.guess is None:
            return 2.0
        later = self.levels[1:]
        streak = 0
        for lv in reversed(later):
            if lv.passed != later[-1].passed:
                break
            streak += 1
        return (1 + self.tolerance) ** (2 ** max(1, streak))
