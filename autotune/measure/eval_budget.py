"""What grading the fixed evaluation set costs: how many items the measured load can reach, and when the
completion pass (items the load did not reach, run once after it) costs more than a user would expect.

The default set is 40 items (workload `eval_items`). Its bootstrap interval on a score in [0, 1] with a spread
of 0.3-0.5 is about ±0.1-0.15; differences between configs are paired by item and so much finer than that.
`eval_items: all` grades every dataset item, at the price these warnings state.
"""

from __future__ import annotations

from autotune.config import WorkloadConfig

DEFAULT_EVAL_ITEMS = 40
COSTLY_SHARE = 0.25  # a completion pass above this share of a trial's wall time is worth a warning


def reachable_items(workload: WorkloadConfig) -> int | None:
    """The most tasks the measured load can send (an upper bound), or None when it depends on the engine (closed
    loop). Capacity: every planned level held, the rate doubling up to `max_levels` and `max_rate`."""
    if workload.load_protocol == "capacity":
        cap = workload.capacity
        total, rate = 0.0, cap.start_rate
        for _ in range(cap.max_levels):
            total += rate * (cap.window_s(rate) + cap.warmup_s)
            rate = min(rate * 2, cap.max_rate)
        return int(total)
    if workload.arrival.mode == "poisson":
        return int(workload.arrival.rate * (workload.warmup_s + workload.duration_s))
    return None


def over_budget_warning(workload: WorkloadConfig, n_items: int) -> str | None:
    """A warning when the evaluation set holds more items than the load can ever reach: the rest always run in
    the completion pass, in every trial."""
    reach = reachable_items(workload)
    if reach is None or n_items <= reach:
        return None
    return (f"the evaluation set holds {n_items} items but the measured load reaches at most {reach}: every trial "
            f"grades the other {n_items - reach} or more in a completion pass at {workload.eval_concurrency} users "
            f"(set workload `eval_items` to {DEFAULT_EVAL_ITEMS} or fewer to bound it)")


def costly_pass_warning(metrics: dict[str, float]) -> str | None:
    """A warning when a trial's completion pass took over a quarter of its wall time (measured, not guessed)."""
    spent, wall = metrics.get("eval_completion_s", 0.0), metrics.get("trial_wall_s", 0.0)
    if not wall or spent <= COSTLY_SHARE * wall:
        return None
    items = metrics.get("eval_completion_items", 0.0)
    return (f"grading quality cost {spent:.0f} s of this {wall:.0f}-s trial ({spent / wall:.0%}): the load left "
            f"{items:.0f} of {metrics.get('eval_items', 0.0):.0f} evaluation items to the completion pass (lower "
            "workload `eval_items` to bound it)")
