"""Open-loop arrival schedules: absolute, seeded times, so a late load generator shows as lag, never as a lower
rate or a shorter latency (no coordinated omission). Pure; the locustfile walks it."""

from __future__ import annotations

import random
from collections.abc import Iterator


def poisson_arrivals(rate: float, start: float, seed: int) -> Iterator[float]:
    """Absolute arrival times of a Poisson process at `rate` per second from `start`, reproducible by seed.
    Each time is the previous one plus an exponential gap: never relative to when the caller woke up."""
    rng = random.Random(seed)
    t = start
    while True:
        t += rng.expovariate(rate)
        yield t


def window_arrivals(rate: float, start: float, window: tuple[float, float], seed: int) -> Iterator[float]:
    """A Poisson schedule at `rate` from `start` whose measurement window [a, b) holds exactly round(rate x (b - a))
    arrivals, placed as sorted uniform draws: a Poisson process conditioned on its expected count. Arrivals stay
    independent of each other (bursts and gaps as Poisson has them), but how much load arrives in the window is
    no longer a draw: one seed's sparse draw once delivered 84-88 % of the rate at every level and overstated
    capacity by 12-16 %. Before and after the window the schedule is plain Poisson (warmup, cooldown)."""
    a, b = window
    for t in poisson_arrivals(rate, start, seed * 3):  # the warmup: Poisson until the window opens
        if t >= a:
            break
        yield t
    rng = random.Random(seed * 3 + 1)
    yield from sorted(rng.uniform(a, b) for _ in range(round(rate * (b - a))))
    yield from poisson_arrivals(rate, b, seed * 3 + 2)  # the cooldown (until the window's tasks finish)


def level_seed(seed: int, index: int, rate: float, segment: int = 0) -> int:
    """A fresh schedule per load level (rate), per load process and per continuation of a level (`segment`), the
    same for every config measured at that level: comparisons between configs meet the same arrivals (common
    random numbers)."""
    return process_seed(seed, index) * 7_919 + round(rate * 1000) + segment * 15_485_863


def process_seed(seed: int, index: int) -> int:
    """Load processes draw independent schedules (their superposition is Poisson at the total rate)."""
    return seed * 1_000_003 + index


def task_order(ids: list[str], eval_first: int, seen: set[str], seed: int) -> list[int]:
    """The order a load process walks the tasks in: the evaluation items (the first `eval_first`) before the rest,
    and among them the ones no earlier level of the trial graded (`seen`) first, so a trial's levels together
    grade the whole set and the completion pass has little or nothing left. Seeded: each level of every trial
    with the same `seen` walks the same sequence."""
    rng = random.Random(seed)
    k = min(eval_first, len(ids))
    head, tail = list(range(k)), list(range(k, len(ids)))
    rng.shuffle(head)
    rng.shuffle(tail)
    return [i for i in head if ids[i] not in seen] + [i for i in head if ids[i] in seen] + tail
