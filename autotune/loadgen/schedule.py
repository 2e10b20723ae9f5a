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
