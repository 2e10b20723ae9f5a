"""How often does `autotune nightly` cry wolf, and how often does it catch a real regression? A simulation.

Each simulated night measures the baseline and the current config in K windows each, as nightly does. A window
has a launch random effect (log-normal, sd LAUNCH_SD on log latency: fresh engines differ) and 20-60 tasks drawn
from a skewed (log-normal) latency distribution; its p95 is taken over its own tasks, as the tuner does. With the
defaults the window p95 has a CV near 17 %, in the 10-20 % that confirm runs of one config showed at 8-s windows
(docs: measurement.md, finding 4). Capacity at SLA follows the launch effect with a little grid noise, the task
error rate is binomial (1 % of tasks fail), and quality is 40 evaluation items with per-item difficulty, 85 %
of them deterministic (temperature 0), the rest a coin with the item's difficulty in every window.

Scenarios: unchanged (the false-alarm rate), a tail-only regression (the slowest 10 % of tasks 30 % slower:
p95 +30 %, median unchanged), a median regression (every task 30 % slower) and a change exactly as large as
the latency tolerance (every task 25 % slower), which the default tolerances must flag at most alpha of the
time. The new test is the shipped
code, autotune.measure.regression.compare_arms, on a capacity study's family (p95 at load, capacity, error rate,
quality; Holm over 4). For contrast, the old test: a one-sided Mann-Whitney U on the pooled per-task latencies of
the K current windows against the tasks of the incumbent's one recorded window, either an unselected window or
the best (lowest p95) of 4, as a trial that won a selection is.

    .venv/bin/python benchmarks/nightly_power.py [--nights 2000] [--seed 7] [--family capacity|fixed]

Prints figures; no assertions.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from scipy.stats import binomtest, mannwhitneyu, norm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from autotune.measure.regression import Window, compare_arms, gates  # noqa: E402

LAUNCH_SD = 0.10  # sd of the launch random effect on log latency
TASK_SIGMA = 0.4  # sd of log task latency within a window
MEDIAN_MS = 1000.0
TASKS = (20, 60)
ITEMS = 40
DETERMINISTIC = 0.85
ERROR_RATE = 0.01
CAPACITY = 4.0
SHIFT = 1.3
TAIL_Z = norm.ppf(0.90)  # tasks above the population's 90th percentile are the slowed tail
SCENARIOS = ("unchanged", "tail", "median", "at_tolerance")
KS = (3, 4, 5, 6)
DEFAULT_TOL = {"latency": 0.25, "capacity": 0.25, "error": 0.02, "quality": 0.05}


def window_tasks(rng: np.random.Generator, scenario: str) -> tuple[np.ndarray, float]:
    """(task latencies in ms, launch effect) of one window."""
    u = rng.normal(0.0, LAUNCH_SD)
    z = rng.normal(size=rng.integers(TASKS[0], TASKS[1] + 1))
    lat = MEDIAN_MS * np.exp(TASK_SIGMA * z)
    if scenario == "tail":
        lat = np.where(z > TAIL_Z, lat * SHIFT, lat)
    elif scenario == "median":
        lat = lat * SHIFT
    elif scenario == "at_tolerance":  # a real change exactly as large as the tolerance: must not be flagged
        lat = lat * (1.0 + DEFAULT_TOL["latency"])
    return lat * np.exp(u), u


def window(rng: np.random.Generator, label: str, scenario: str, quality: tuple[np.ndarray, np.ndarray, np.ndarray],
           family: str) -> tuple[Window, np.ndarray]:
    lat, u = window_tasks(rng, scenario)
    difficulty, fixed, outcome = quality
    coin = (rng.random(ITEMS) < difficulty).astype(float)
    scores = np.where(fixed, outcome, coin)
    p95 = float(np.percentile(lat, 95))
    metrics = {"p95_task_ms_at_load" if family == "capacity" else "p95_task_ms": p95,
               "task_error_rate": float(rng.binomial(len(lat), ERROR_RATE) / len(lat))}
    if family == "capacity":
        metrics["capacity_tps"] = float(CAPACITY * np.exp(-0.8 * u + rng.normal(0.0, 0.05)))
    return Window(label, metrics, {f"i{i}": float(s) for i, s in enumerate(scores)}), lat


def night(args: tuple[int, int, str, int, float, str]) -> dict[str, int]:
    """One simulated night: the new test's decisions (tolerance 0 and default) and the old test's."""
    seed, k, scenario, index, alpha, family = args
    rng = np.random.default_rng([seed, k, SCENARIOS.index(scenario), index])
    difficulty = rng.beta(3.0, 1.5, ITEMS)
    quality = (difficulty, rng.random(ITEMS) < DETERMINISTIC, (rng.random(ITEMS) < difficulty).astype(float))
    base, cur, base_tasks, cur_tasks = [], [], [], []
    for i in range(k):  # interleaved, as nightly runs them (the order does not matter in the simulation)
        w, lat = window(rng, f"baseline-{i}", "unchanged", quality, family)
        base.append(w)
        base_tasks.append(lat)
        w, lat = window(rng, f"current-{i}", scenario, quality, family)
        cur.append(w)
        cur_tasks.append(lat)
    g = gates(family, 0.0, 0.0, 0.0)
    verdict = compare_arms(base, cur, g, alpha, 0.0)
    by = {c.metric: c for c in verdict.comparisons}
    lat_metric = g[0].metric
    out = {"any0": int(bool(verdict.regressions)), "lat0": int(by[lat_metric].regressed)}
    # the shipped defaults: each test's null is "worse by at most the tolerance" (autotune.measure.regression)
    tol = compare_arms(base, cur, gates(family, DEFAULT_TOL["latency"], DEFAULT_TOL["capacity"], DEFAULT_TOL["error"]),
                       alpha, DEFAULT_TOL["quality"])
    out["any_tol"] = int(bool(tol.regressions))
    out["lat_tol"] = int(next(c for c in tol.comparisons if c.metric == lat_metric).regressed)

    # the old test: pooled tasks of the K current windows against one recorded window of the incumbent
    pooled = np.concatenate(cur_tasks)
    recorded = [window_tasks(rng, "unchanged")[0] for _ in range(4)]
    selected = min(recorded, key=lambda t: np.percentile(t, 95))
    for name, ref in (("old_unsel", recorded[0]), ("old_sel", selected)):
        out[name] = int(mannwhitneyu(pooled, ref, alternative="greater").pvalue < alpha)
    return out


def _worker_init() -> None:
    """statsmodels' Holm calls gc.collect() on every use; with the imports frozen out of the collector it is cheap."""
    night((0, 3, "unchanged", 0, 0.05, "capacity"))  # import scipy, statsmodels
    gc.freeze()


def wilson(k: int, n: int) -> str:
    ci = binomtest(k, n).proportion_ci(method="wilson")
    return f"{k / n:6.1%} [{ci.low:5.1%}, {ci.high:5.1%}]"


def window_cv(seed: int, n: int = 4000) -> float:
    rng = np.random.default_rng([seed, 99])
    p95 = [np.percentile(window_tasks(rng, "unchanged")[0], 95) for _ in range(n)]
    return float(np.std(p95) / np.mean(p95))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--nights", type=int, default=2000, help="simulated nights per K and scenario")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--alpha", type=float, default=0.05)
    ap.add_argument("--family", choices=("capacity", "fixed"), default="capacity",
                    help="capacity: p95 at load, capacity, error rate, quality (4 tests); fixed: 3 tests")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    a = ap.parse_args()
    started = time.monotonic()
    print(f"window p95 CV (launch sd {LAUNCH_SD}, {TASKS[0]}-{TASKS[1]} tasks, task log-sd {TASK_SIGMA}): "
          f"{window_cv(a.seed):.1%}")
    jobs = [(a.seed, k, s, i, a.alpha, a.family) for k in KS for s in SCENARIOS for i in range(a.nights)]
    with ProcessPoolExecutor(a.workers, initializer=_worker_init) as pool:
        results = list(pool.map(night, jobs, chunksize=50))
    tally: dict[tuple[int, str], dict[str, int]] = {}
    for (_, k, s, *_rest), r in zip(jobs, results, strict=True):
        t = tally.setdefault((k, s), dict.fromkeys(r, 0))
        for key, v in r.items():
            t[key] += v
    n = a.nights
    print(f"\n{n} nights per cell, alpha {a.alpha}, {a.family} family; new test = exact permutation on windows + "
          "paired quality + Holm")
    print("false alarm = any metric flagged on an unchanged config; power = the p95 metric flagged "
          "(+30 % tail-only / +30 % median); 95 % Wilson intervals on the false-alarm rates")
    header = (f"{'K':>2} | {'false alarm, tol 0':>24} | {'false alarm, default tol':>24} | "
              f"{'change = tol (+25%), flagged':>28} | {'tail, tol 0':>11} | {'tail, tol 25%':>13} | "
              f"{'median, tol 0':>13} | {'median, tol 25%':>15}")
    print(header)
    print("-" * len(header))
    for k in KS:
        u, tl, md, at = (tally[(k, s)] for s in SCENARIOS)
        print(f"{k:>2} | {wilson(u['any0'], n):>24} | {wilson(u['any_tol'], n):>24} | {wilson(at['any_tol'], n):>28} | "
              f"{tl['lat0'] / n:>11.1%} | {tl['lat_tol'] / n:>13.1%} | {md['lat0'] / n:>13.1%} | "
              f"{md['lat_tol'] / n:>15.1%}")
    print("\nold test (one-sided Mann-Whitney on pooled task latencies, p < alpha), same simulated nights:")
    header = f"{'K':>2} | {'baseline window':>16} | {'false alarm':>24} | {'tail power':>10} | {'median power':>12}"
    print(header)
    print("-" * len(header))
    for k in KS:
        for key, name in (("old_unsel", "unselected"), ("old_sel", "best of 4")):
            u, tl, md = tally[(k, "unchanged")], tally[(k, "tail")], tally[(k, "median")]
            print(f"{k:>2} | {name:>16} | {wilson(u[key], n):>24} | {tl[key] / n:>10.1%} | {md[key] / n:>12.1%}")
    print(f"\n{time.monotonic() - started:.0f} s on {a.workers} workers")


if __name__ == "__main__":
    main()
