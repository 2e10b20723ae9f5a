"""The capacity search (bracket, bisect, stop reasons) and the level verdict (Wilson interval). Pure."""

from __future__ import annotations

import math

import pytest

from autotune.loadgen.load_config import LoadConfig
from autotune.measure.capacity import CapacitySearch, LevelResult
from autotune.sla import early_stop, judge


def _run(search: CapacitySearch, capacity: float) -> CapacitySearch:
    """Drive the search against a system whose true capacity is known: a level passes iff rate <= capacity."""
    while (rate := search.next_rate()) is not None:
        search.record(LevelResult(rate, passed=rate <= capacity))
    return search


@pytest.mark.parametrize("true_capacity", [0.3, 1.0, 2.7, 5.0, 11.0])
def test_finds_a_known_capacity_within_the_tolerance(true_capacity):
    s = _run(CapacitySearch(start_rate=0.5, tolerance=0.1, max_levels=12, min_rate=0.05), true_capacity)
    assert s.stop_reason == "converged" and s.resolved
    low, high = s.bracket
    assert low == s.capacity <= true_capacity < high <= low * 1.1 + 1e-9
    assert any(lv.passed for lv in s.levels) and any(not lv.passed for lv in s.levels), "a bracketed boundary"


@pytest.mark.parametrize("true_capacity", [0.2, 0.7, 1.6, 3.3, 6.0, 14.0, 40.0])
@pytest.mark.parametrize("error", [0.5, 0.8, 1.0, 1.15, 1.6, 3.0])
def test_an_estimate_shortens_the_search_and_a_wrong_one_still_converges(true_capacity, error):
    guided = _run(CapacitySearch(start_rate=0.5, tolerance=0.1, max_levels=20, min_rate=0.01,
                                 guess=true_capacity * error), true_capacity)
    plain = _run(CapacitySearch(start_rate=0.5, tolerance=0.1, max_levels=20, min_rate=0.01), true_capacity)
    for s in (guided, plain):
        assert s.stop_reason == "converged" and s.capacity <= true_capacity < s.bracket[1] <= s.capacity * 1.1 + 1e-9
    if 0.9 <= error <= 1.15 and true_capacity * error > 0.5:  # a near estimate: bracketed in two levels
        assert len(guided.levels) <= 5, [lv.rate for lv in guided.levels]
    assert len(guided.levels) <= len(plain.levels) + 3, "a wrong estimate costs a few levels, never a blow-up"


def test_an_estimate_within_ten_percent_takes_at_most_four_levels_on_average():
    import numpy as np

    rng = np.random.default_rng(0)
    counts = []
    for true_capacity in rng.uniform(1.0, 20.0, 200):
        s = _run(CapacitySearch(start_rate=0.5, tolerance=0.1, max_levels=20,
                                guess=true_capacity * rng.uniform(0.9, 1.1)), true_capacity)
        counts.append(len(s.levels))
    assert np.mean(counts) <= 4.0 and max(counts) <= 5


def test_nothing_passes_is_capacity_zero_never_a_made_up_minimum():
    s = _run(CapacitySearch(start_rate=1.0, min_rate=0.2), 0.01)
    assert s.capacity == 0.0 and s.stop_reason == "nothing_passed" and s.resolved
    assert [lv.rate for lv in s.levels] == [1.0, 0.5, 0.25, 0.2], "min_rate itself is tested before claiming 0"
    held = _run(CapacitySearch(start_rate=1.0, min_rate=0.2, tolerance=0.3), 0.21)
    assert held.capacity == 0.2 and held.stop_reason == "converged", "a config that holds min_rate is not 0"


def test_everything_passes_stops_at_the_rate_limit_or_the_level_budget():
    s = _run(CapacitySearch(start_rate=1.0, max_rate=10.0, max_levels=10), 1e9)
    assert s.stop_reason == "max_rate" and s.capacity == 10.0 and s.resolved and s.bracket[1] == float("inf")
    s = _run(CapacitySearch(start_rate=1.0, max_levels=3), 1e9)
    assert s.stop_reason == "max_levels" and s.capacity == 4.0 and len(s.levels) == 3 and not s.resolved


def test_a_bracket_left_wider_than_asked_says_so():
    s = _run(CapacitySearch(start_rate=0.5, tolerance=0.1, max_levels=5), 3.0)
    assert s.stop_reason == "max_levels" and not s.resolved
    low, high = s.bracket
    assert low <= 3.0 < high and high / low > 1.1


def test_a_level_the_generator_could_not_hold_ends_the_search():
    s = CapacitySearch(start_rate=1.0)
    s.record(LevelResult(1.0, passed=True))
    s.record(LevelResult(2.0, passed=True, valid=False))
    assert s.next_rate() is None and s.stop_reason == "generator_limit" and s.capacity == 1.0


def test_verdicts_are_tests_on_the_interval():
    assert judge(60, 60, 0.95).passed and judge(60, 60, 0.95).resolved
    fail = judge(30, 40, 0.95)
    assert not fail.passed and fail.resolved and fail.ci_high < 0.95
    unsure = judge(39, 40, 0.95)  # 97.5 % point estimate, interval straddles the target
    assert not unsure.resolved and unsure.passed and unsure.ci_low < 0.95 < unsure.ci_high
    assert not judge(0, 0, 0.95).passed


def test_the_wilson_interval_is_scipys():
    from scipy.stats import binomtest

    from autotune.sla import wilson

    for judged in (1, 2, 7, 30, 200):
        for met in sorted({0, 1, judged // 3, judged - 1, judged}):
            for confidence in (0.8, 0.9, 0.95):
                ci = binomtest(met, judged).proportion_ci(confidence_level=confidence, method="wilson")
                assert wilson(met, judged, confidence) == pytest.approx((ci.low, ci.high), abs=1e-12)
    assert wilson(0, 0, 0.9) == (0.0, 1.0)
    for judged in (1, 5, 10, 100, 997):  # exact ends: a perfect level meets even a target of 1.0
        assert wilson(judged, judged, 0.9)[1] == 1.0 and wilson(0, judged, 0.9)[0] == 0.0
    assert judge(5, 5, 1.0, 0.8).passed and not judge(4, 5, 1.0, 0.8).passed


def test_a_level_is_extended_only_while_its_misses_leave_the_verdict_a_coin_flip():
    from autotune.sla import straddles

    assert straddles(met=22, missed=3, target=0.95, confidence=0.9), "88 %: its interval holds 0.95"
    assert straddles(met=36, missed=1, target=0.95, confidence=0.9)
    assert not straddles(met=25, missed=0, target=0.95, confidence=0.9), "no miss: passes by its point estimate"
    assert not straddles(met=19, missed=15, target=0.95, confidence=0.9), "a certain fail"
    assert not straddles(met=400, missed=2, target=0.95, confidence=0.9), "a certain pass"


def test_early_stop_only_when_pending_tasks_cannot_change_the_verdict():
    assert early_stop(met=60, missed=0, pending=0, target=0.95, confidence=0.9, min_judged=20) == "pass"
    assert early_stop(met=10, missed=15, pending=5, target=0.95, confidence=0.9, min_judged=20) == "fail"
    assert early_stop(met=30, missed=0, pending=5, target=0.95, confidence=0.9, min_judged=20) is None
    assert early_stop(met=5, missed=5, pending=0, target=0.95, confidence=0.9, min_judged=20) is None


def test_open_loop_schedule_is_absolute_seeded_and_poisson():
    import itertools

    from scipy.stats import kstest

    from autotune.loadgen.schedule import poisson_arrivals

    times = list(itertools.takewhile(lambda t: t < 1000.0, poisson_arrivals(4.0, 0.0, seed=7)))
    again = list(itertools.takewhile(lambda t: t < 1000.0, poisson_arrivals(4.0, 0.0, seed=7)))
    assert times == again, "seeded: the same schedule every time"
    assert abs(len(times) - 4000) < 4 * 4000 ** 0.5, "count: Poisson(rate x T) within 4 sigma"
    gaps = [b - a for a, b in itertools.pairwise([0.0, *times])]
    assert kstest(gaps, "expon", args=(0, 1 / 4.0)).pvalue > 0.01, "spacing: exponential gaps"
    shifted = list(itertools.islice(poisson_arrivals(4.0, 100.0, seed=7), 5))
    assert shifted == pytest.approx([t + 100.0 for t in times[:5]]), "absolute: offsets from the start"


def test_each_level_walks_the_evaluation_items_earlier_levels_did_not_grade_first():
    from autotune.loadgen.schedule import task_order

    ids = [f"e{i}" for i in range(6)] + [f"x{i}" for i in range(4)]
    first = task_order(ids, 6, set(), seed=3)
    assert sorted(first[:6]) == list(range(6)) and sorted(first[6:]) == list(range(6, 10))
    assert task_order(ids, 6, set(), seed=3) == first  # seeded
    seen = {ids[i] for i in first[:4]}  # what a 4-task level graded
    later = task_order(ids, 6, seen, seed=3)
    assert {ids[i] for i in later[:2]} == set(ids[:6]) - seen and later[6:] == first[6:]


def test_a_task_is_good_only_if_it_and_every_call_meet_their_limits():
    from autotune.sla import known_miss, task_meets

    fm = {"kind": "fm", "ttft_s": 0.2, "ms": 1200.0, "tokens_out": 11}  # TPOT = (1.2 - 0.2) / 10 = 100 ms
    task = {"ok": True, "latency_s": 1.5, "spans": [fm, {"kind": "cpu", "ms": 1.0}]}
    assert task_meets(task, {"task_ms": 2000, "ttft_ms": 500, "tpot_ms": 150})
    assert not task_meets(task, {"task_ms": 1000})
    assert not task_meets(task, {"ttft_ms": 100})
    assert not task_meets(task, {"tpot_ms": 50})
    assert not task_meets({**task, "ok": False}, {})
    assert not task_meets(task, {"e2e_ms": 1000}) and task_meets(task, {"e2e_ms": 1200})  # per call, like requests
    no_token = {**task, "spans": [{**fm, "ttft_s": None}]}
    assert not task_meets(no_token, {"ttft_ms": 500}) and task_meets(no_token, {"tpot_ms": 1})  # as requests do
    assert known_miss({"send_ts": 10.0, "scheduled_ts": 9.0}, 12.5, {"task_ms": 3000})
    assert not known_miss({"send_ts": 10.0, "scheduled_ts": None}, 12.5, {"task_ms": 3000})


def test_the_levels_chart_draws_every_level_and_the_frontier(tmp_path):
    from autotune.tracking.study_figures import levels_png

    points = [{"trial": t, "tasks_per_s": x, "p95_task_ms": y, "passed": y < 3000}
              for t, x, y in [(0, 1, 500), (0, 2, 900), (0, 4, 5000), (1, 1, 400), (1, 3, 1200)]]
    fig = levels_png(points, 3000)
    ax = fig.axes[0]
    assert sum(len(c.get_offsets()) for c in ax.collections) == 5
    frontier = [line for line in ax.get_lines() if line.get_linestyle() == "--"][0]
    assert list(frontier.get_xdata()) == [1, 2, 3, 4]


BASE = LoadConfig(tasks=[{"id": "e0"}], app={})


def test_a_low_rate_level_is_stretched_to_its_expected_tasks(tmp_path):
    """`min_expected_tasks`: a level whose window would expect fewer arrivals is lengthened (n / rate); the first
    level never abandons its tasks on a failed verdict (its latencies are objectives), later ones do."""
    from types import SimpleNamespace

    from autotune.config.workload import Capacity

    seen = []

    def fake_load(url, cfg, out_dir, api_key=None, standbys=None):
        seen.append(cfg)
        tasks = [{"phase": "measure", "ok": False, "latency_s": 99.0, "send_ts": 1.0}] * 3
        return SimpleNamespace(tasks=tasks, records=[], summary={"measure_s": cfg.duration_s})

    cap = Capacity(start_rate=0.5, tolerance=1.0, max_levels=3, level_s=5, min_expected_tasks=4, min_rate=0.1)
    run = _levels_on(fake_load, cap, tmp_path)
    assert [lv.rate for lv in run.levels] == [0.5, 0.25, 0.125] and run.capacity == 0
    assert all(c.eval_seen == [] for c in seen)  # failed levels' unanswered attempts grade nothing
    assert [c.duration_s for c in seen] == [8.0, 16.0, 32.0], "certain fails: no continuation"
    assert [c.level.abandon_on_fail for c in seen] == [False, True, True]


def test_a_coin_flip_level_is_continued_once_and_judged_with_its_continuation(tmp_path):
    """22 of 25 met at 0.95 is a coin flip: a continuation window at the same rate (a fresh draw, its early stop
    told the level's counts so far) runs, and both windows carry the pooled verdict; the search sees one level."""
    from types import SimpleNamespace

    from autotune.config.workload import Capacity

    seen = []

    def fake_load(url, cfg, out_dir, api_key=None, standbys=None):
        seen.append(cfg)
        good = {"phase": "measure", "ok": True, "latency_s": 0.1, "send_ts": 1.0, "id": "e0"}
        misses = 3 if len(seen) == 1 else 0  # the first window: 22/25; its continuation: 40/40
        tasks = [good] * (25 - misses if len(seen) == 1 else 40) + [{**good, "latency_s": 99.0}] * misses
        return SimpleNamespace(tasks=tasks, records=[], summary={"measure_s": cfg.duration_s})

    cap = Capacity(start_rate=1, tolerance=0.3, max_levels=1, level_s=25, extend_s=30, min_tasks=4)
    run = _levels_on(fake_load, cap, tmp_path)
    assert [c.duration_s for c in seen] == [25.0, 30.0]
    assert [(c.level.segment, c.level.prior_met, c.level.prior_missed) for c in seen] == [(0, 0, 0), (1, 22, 3)]
    assert seen[1].level.abandon_on_fail, "a continuation is not the operating load's objective window"
    assert seen[0].eval_seen == [] and seen[1].eval_seen == ["e0"], "the continuation walks other items first"
    rows = run.rows()
    assert [(r["segment"], r["met"], r["judged"]) for r in rows] == [(0, 22, 25), (1, 40, 40)]
    assert all(r["level_met"] == 62 and r["level_judged"] == 65 and r["passed"] for r in rows), rows
    assert len(run.search.levels) == 1 and run.capacity == 1, "one level, held on 62 of 65"


def test_the_next_level_is_told_which_evaluation_items_are_graded(tmp_path):
    """A held level grades every item it attempted, a failed one only the items it answered (the trial's rule):
    the next level's config lists them, so it walks the others first."""
    from types import SimpleNamespace

    from autotune.config.workload import Capacity

    seen = []

    def fake_load(url, cfg, out_dir, api_key=None, standbys=None):
        seen.append(cfg)
        good = {"phase": "measure", "ok": True, "latency_s": 0.1, "send_ts": 1.0}
        if len(seen) == 1:  # the operating load holds: e0 answered, e1 failed (still graded: 0)
            tasks = [{**good, "id": "e0"}, {**good, "id": "e1", "ok": False}] + [good] * 20
        else:  # overloaded: e2 answered, e3 missed
            tasks = [{**good, "id": "e2", "latency_s": 99.0}, {**good, "id": "e3", "ok": False}] \
                + [{**good, "ok": False}] * 20
        return SimpleNamespace(tasks=tasks, records=[], summary={"measure_s": cfg.duration_s})

    cap = Capacity(start_rate=1, tolerance=0.3, max_levels=3, level_s=5, min_tasks=4, extend_s=0)
    _levels_on(fake_load, cap, tmp_path, attainment=0.9, eval_ids=["e0", "e1", "e2", "e3"])
    assert [c.eval_seen for c in seen] == [[], ["e0", "e1"], ["e0", "e1", "e2"]]


def test_a_level_window_receives_exactly_its_rate_over_seeds():
    """The window holds round(rate x length) arrivals for every seed (a plain seeded Poisson draw once gave one
    seed 84-88 % of the rate at every level); within it arrivals are independent uniforms (Poisson conditioned on
    its count), around it the gaps are exponential; every level and process draws afresh, reproducibly."""
    import itertools

    from scipy.stats import kstest

    from autotune.loadgen.schedule import level_seed, poisson_arrivals, window_arrivals

    a, b = 101.5, 126.5  # a 25-s window after a 1.5-s warmup
    plain, positions, outside = [], [], []
    for seed in range(200):
        for rate in (0.5, 1.75, 3.0, 8.0):
            fresh = level_seed(seed, 0, rate)  # as the locustfile draws each level
            times = list(itertools.takewhile(lambda t: t < 150.0, window_arrivals(rate, 100.0, (a, b), fresh)))
            inside = [t for t in times if a <= t < b]
            assert len(inside) == round(rate * (b - a)), (seed, rate)
            assert times == sorted(times) and all(t > 100.0 for t in times)
            positions += [(t - a) / (b - a) for t in inside]
            after = itertools.islice(itertools.dropwhile(lambda t: t < b, window_arrivals(rate, 100.0, (a, b), fresh)),
                                     30)  # a count, not a time limit: a time limit would keep the short gaps only
            outside += [(y - x) * rate for x, y in itertools.pairwise([b, *after])]
            drawn = sum(a <= t < b for t in itertools.takewhile(lambda t: t < b, poisson_arrivals(rate, 100.0, seed)))
            plain.append(drawn / (rate * (b - a)))
    assert kstest(positions, "uniform").pvalue > 0.01, "inside the window: uniform positions"
    assert kstest(outside, "expon").pvalue > 0.01, "after it: exponential gaps (unit rate)"
    assert min(plain) < 0.85 and max(plain) > 1.15, "a plain draw's share of the rate varies by seed (the bias)"
    again = list(itertools.islice(window_arrivals(1.75, 100.0, (a, b), 3), 40))
    assert again == list(itertools.islice(window_arrivals(1.75, 100.0, (a, b), 3), 40)), "seeded"
    assert len({level_seed(0, i, r) for i in range(4) for r in (0.5, 1.0, 1.75, 3.0)}) == 16, "fresh per level"


def test_the_first_estimate_scales_the_nearest_measured_config_by_service_demand():
    from autotune.measure import CapacityPrior, first_estimate

    a, b = {"max_num_seqs": 4}, {"max_num_seqs": 16}
    priors = [CapacityPrior(3.0, 1.0, a, "k1"), CapacityPrior(6.0, 1.5, b, "k2"), CapacityPrior(2.0, 0.5, a, "k3")]
    assert first_estimate(1.0, [], b) is None, "no neighbour: double from the operating load"
    assert first_estimate(0.75, priors, b, "k2") == pytest.approx(6.0 * 0.75 / 1.5)  # the same config
    assert first_estimate(1.0, priors, a, "new") == pytest.approx(2.0 * 1.0 / 0.5)  # the latest of the same server
    assert first_estimate(1.0, priors, {"max_num_seqs": 8}) == pytest.approx(2.0 / 0.5)  # else the latest
    assert first_estimate(float("nan"), priors, a) is None
    assert first_estimate(1.0, [CapacityPrior(0.0, 1.0, a)], a) is None, "capacity 0 scales to nothing"


def _levels_on(fake_load, cap, tmp_path, attainment: float = 0.95, eval_ids: list[str] | None = None,
               stop_early=None, engine=None):
    """run_levels with `fake_load` for the load generator (no engine: the prefix reset and the idle wait are
    no-ops), an 8-s task SLA and `attainment`."""
    from types import SimpleNamespace

    from autotune.measure import levels

    inputs = SimpleNamespace(workload=SimpleNamespace(capacity=cap, drain_timeout_s=30),
                             space=SimpleNamespace(sla=SimpleNamespace(task_ms=8000, ttft_ms=None, tpot_ms=None,
                                                                       attainment=attainment), engine=engine))
    if eval_ids is not None:
        inputs.eval_ids = eval_ids
    orig = levels.run_load, levels.reset_prefix_cache, levels.wait_idle
    levels.run_load, levels.reset_prefix_cache, levels.wait_idle = fake_load, lambda url: True, lambda *a, **k: 0.0
    try:
        return levels.run_levels("http://x", BASE, inputs, tmp_path, lambda s: None, None, lambda load: None,
                                 stop_early=stop_early)
    finally:
        levels.run_load, levels.reset_prefix_cache, levels.wait_idle = orig


def test_a_search_stops_when_the_trial_says_why(tmp_path):
    """`stop_early` ends the search after the level it is shown, with its reason as the stop reason: the bracket
    stays as wide as the levels left it and does not claim the resolution."""
    from types import SimpleNamespace

    from autotune.config.workload import Capacity

    def fake_load(url, cfg, out_dir, api_key=None, standbys=None):
        good = {"phase": "measure", "ok": True, "latency_s": 0.1, "send_ts": 1.0, "id": "e0"}
        return SimpleNamespace(tasks=[good] * 30, records=[], summary={"measure_s": cfg.duration_s})

    shown = []

    def stop(lvls, search):
        shown.append(len(lvls))
        return "quality_floor" if len(lvls) == 2 else None

    cap = Capacity(start_rate=1, tolerance=0.1, max_levels=8, level_s=5, min_tasks=4, extend_s=0)
    run = _levels_on(fake_load, cap, tmp_path, stop_early=stop)
    assert shown == [1, 2] and len(run.levels) == 2
    assert run.search.stop_reason == "quality_floor" and not run.search.resolved
    assert run.search.bracket == (2.0, math.inf)


def test_an_api_rate_limit_fails_a_level_without_running_it(tmp_path):
    """With `rpm` 120 and 2 calls per task (measured at the operating load), 1 task/s is 120 calls/min: it runs;
    2 tasks/s would be 240: a failed level named `rate_limit`, no load sent, and the search bisects below it."""
    from types import SimpleNamespace

    from autotune.config.workload import Capacity

    sent = []

    def fake_load(url, cfg, out_dir, api_key=None, standbys=None):
        sent.append(cfg.arrival.rate)
        good = {"phase": "measure", "ok": True, "latency_s": 0.1, "send_ts": 1.0, "id": "e0"}
        call = {"phase": "measure", "ok": True, "prompt_tokens": 50, "completion_tokens": 10, "e2e_s": 0.1,
                "ttft_s": 0.01, "send_ts": 1.0, "token_ts": [], "token_counts": []}
        return SimpleNamespace(tasks=[good] * 30, records=[call] * 60, summary={"measure_s": cfg.duration_s})

    from autotune.measure import levels

    cap = Capacity(start_rate=1, tolerance=0.3, max_levels=4, level_s=5, min_tasks=4, extend_s=0)
    run = _levels_on(fake_load, cap, tmp_path, engine=SimpleNamespace(rpm=120, tpm=None))  # 2 calls per task
    refused = [r for r in run.rows() if str(r.get("early_stop", "")).startswith("rate_limit")]
    assert refused and refused[0]["rate"] == 2.0 and "240 calls/min > rpm 120" in refused[0]["early_stop"]
    assert 2.0 not in sent and all(r <= 1.0 for r in sent[1:] or [1.0]), sent
    assert run.capacity == 1.0 and not refused[0]["passed"]
    # a routed endpoint's own limits count its own calls: 1 of the task's 2 calls, 1000 tokens each
    load = SimpleNamespace(tasks=[{"phase": "measure"}], records=[
        {"phase": "measure", "endpoint": "engine", "prompt_tokens": 900, "completion_tokens": 100},
        {"phase": "measure", "endpoint": "api", "prompt_tokens": 900, "completion_tokens": 100}])
    space = SimpleNamespace(engine=SimpleNamespace(rpm=None, tpm=None),
                            endpoints={"api": SimpleNamespace(rpm=None, tpm=30000)})
    assert levels.over_rate_limit(0.4, load, space) is None
    assert levels.over_rate_limit(1.0, load, space) == "rate_limit: 60000 tokens/min to api > tpm 30000"
