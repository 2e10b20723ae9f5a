"""autotune.measure.regression on small hand-made cases: exact p-values, the paired quality tests, Holm, and the
rule that a regression needs both significance and a change beyond the tolerance."""

from __future__ import annotations

import math

import numpy as np
import pytest

from autotune.measure.regression import (
    FAILED,
    Gate,
    Window,
    compare_arms,
    gates,
    holm,
    min_p,
    paired_quality_p,
    permutation_p,
    power_warning,
    windows_needed,
)

P95 = Gate("p95_task_ms", "higher", True, 0.25, "ms")
ERR = Gate("task_error_rate", "higher", False, 0.02)


def _windows(arm: str, p95: list[float], errors: list[float] | None = None, items=None) -> list[Window]:
    errors = errors or [0.0] * len(p95)
    return [Window(f"{arm}-{i}", {"p95_task_ms": v, "task_error_rate": e}, dict(items or {}))
            for i, (v, e) in enumerate(zip(p95, errors, strict=True))]


def test_exact_permutation_p_for_three_windows_per_arm():
    # every current window worse: 1 of C(6,3) = 20 arrangements is as extreme
    assert permutation_p([100, 110, 105], [130, 140, 135], "higher", log=True) == pytest.approx(1 / 20)
    assert permutation_p([100, 110, 105], [130, 140, 135], "lower", log=True) == pytest.approx(1.0)
    # current {101, 135, 140} against {100, 105, 110}: the current sets whose product of values is at least
    # 101*135*140 = 1908900 are {110, 135, 140}, {105, 135, 140} and the observed one -> 3/20
    assert permutation_p([100, 110, 105], [101, 140, 135], "higher", log=True) == pytest.approx(3 / 20)
    assert permutation_p([4.0, 4.1, 3.9], [3.0, 3.1, 2.9], "lower", log=True) == pytest.approx(1 / 20)
    assert permutation_p([5, 5, 5], [5, 5, 5], "higher", log=False) == 1.0, "all equal: no evidence"
    assert min_p(3) == 1 / 20 and min_p(4) == 1 / 70 and min_p(5) == 1 / 252


def test_windows_needed_and_the_warning():
    assert windows_needed(0.05, 4) == 5 and windows_needed(0.05, 3) == 4 and windows_needed(0.05, 1) == 3
    assert power_warning(5, 0.05, 4) is None
    line = power_warning(4, 0.05, 4)
    assert line and "4 windows per arm" in line and "--confirm 5" in line and "\n" not in line


def test_mcnemar_on_a_hand_made_discordant_table():
    # 10 items: 6 both right, 1 both wrong, 3 lost (1 -> 0), 0 gained; one-sided exact p = 0.5^3
    base = {f"i{i}": 1.0 for i in range(9)} | {"i9": 0.0}
    cur = dict(base) | {"i0": 0.0, "i1": 0.0, "i2": 0.0}
    p, test, items = paired_quality_p(base, cur)
    assert p == pytest.approx(0.125) and test.startswith("McNemar") and "3 lost, 0 gained" in test
    assert len(items) == 10
    # 5 lost, 1 gained: P(X >= 5 | n=6, 1/2) = 7/64
    cur2 = dict(base) | {f"i{i}": 0.0 for i in range(5)} | {"i9": 1.0}
    assert paired_quality_p(base, cur2)[0] == pytest.approx(7 / 64)
    assert paired_quality_p(base, base)[0] == 1.0, "no discordant pair"


def test_wilcoxon_path_with_non_binary_scores():
    rng = np.random.default_rng(3)
    base = {f"i{i}": float(s) for i, s in enumerate(rng.uniform(0.4, 1.0, 30))}
    worse = {k: max(0.0, v - 0.3) for k, v in base.items()}
    p, test, _ = paired_quality_p(base, worse)
    assert test.startswith("Wilcoxon") and p < 1e-6
    assert paired_quality_p(worse, base)[0] > 0.99, "one-sided: better is not a regression"
    p, test, _ = paired_quality_p(base, dict(base))
    assert p == 1.0 and test.startswith("Wilcoxon"), "all-equal items: p = 1, no crash"


def test_holm_on_known_p_values():
    # sorted 0.01, 0.03, 0.04 over m=3 -> 0.03, max(0.06, 0.03), max(0.04, 0.06) -> in the given order
    assert holm([0.04, 0.01, 0.03]) == pytest.approx([0.06, 0.03, 0.06])
    assert holm([0.5]) == [0.5] and holm([]) == []


def test_a_regression_needs_significance_and_tolerance():
    base = _windows("baseline", [1000, 1050, 980, 1020, 1010])
    slow = _windows("current", [1500, 1560, 1490, 1530, 1510])
    v = compare_arms(base, slow, [P95, ERR], 0.05, 0.05)
    lat = v.comparisons[0]
    assert lat.metric == "p95_task_ms" and lat.regressed and v.regressions == [lat]
    assert lat.p_value == pytest.approx(1 / 252) and lat.p_adjusted == pytest.approx(2 / 252), "Holm over 2"
    assert lat.baseline == pytest.approx(math.exp(np.mean(np.log([1000, 1050, 980, 1020, 1010]))))
    assert lat.change == pytest.approx(lat.current / lat.baseline - 1) and lat.change > 0.25
    line = lat.line()
    assert line.startswith("p95_task_ms: 1012 -> 1518 ms (+50%), permutation test over 5+5 windows")
    assert "Holm-adjusted p=0.0079 (confidence 99.2%)" in line

    small = _windows("current", [1100, 1150, 1080, 1120, 1110])  # +10%: a real change, but within 25%
    v = compare_arms(base, small, [P95, ERR], 0.05, 0.05)
    assert v.comparisons[0].p_adjusted > 0.05 and not v.regressions, "H0 is 'worse by at most the tolerance'"
    strict = Gate("p95_task_ms", "higher", True, 0.0, "ms")  # without a tolerance the same change is significant
    assert compare_arms(base, small, [strict, ERR], 0.05, 0.05).comparisons[0].p_adjusted < 0.05
    edge = _windows("current", [1260, 1320, 1230, 1280, 1270])  # +26%: beyond 25% by a hair, not shown beyond it
    assert not compare_arms(base, edge, [P95, ERR], 0.05, 0.05).regressions
    few = compare_arms(base[:2], slow[:2], [P95, ERR], 0.05, 0.05)  # +50% but 2+2 windows: p >= 1/6
    assert few.comparisons[0].p_value == pytest.approx(1 / 6) and not few.regressions
    assert compare_arms(slow, base, [P95, ERR], 0.05, 0.05).regressions == [], "faster is not a regression"


def test_quality_joins_the_family_only_with_item_scores():
    base = _windows("baseline", [1000] * 4)
    v = compare_arms(base, _windows("current", [1000] * 4), [P95, ERR], 0.05, 0.05)
    assert v.untested == {"quality": "no per-item scores"} and len(v.comparisons) == 2
    right = {f"i{i}": 1.0 for i in range(20)}
    wrong = right | {f"i{i}": 0.0 for i in range(10)}  # 10 lost, 0 gained: p = 2^-10
    v = compare_arms(_windows("baseline", [1000] * 4, items=right), _windows("current", [1000] * 4, items=wrong),
                     [P95, ERR], 0.05, 0.05)
    q = v.comparisons[-1]
    assert q.metric == "quality" and q.regressed and q.change == pytest.approx(-0.5)
    assert q.p_value == pytest.approx(2 ** -10) and q.p_adjusted == pytest.approx(3 * 2 ** -10)
    assert q.line().startswith("quality: 1 -> 0.5 (-0.500), McNemar exact test over 20 items")


def test_failed_windows_are_counted_and_reported():
    base = _windows("baseline", [1000, 1010, 990, 1005, 995])
    cur = _windows("current", [1001, 1011, 991])
    cur += [Window(f"current-{i}", failure="engine_hung: no token for 60 s") for i in (3, 4)]
    v = compare_arms(base, cur, [P95, ERR], 0.05, 0.05)
    fail = next(c for c in v.comparisons if c.metric == FAILED)
    assert (fail.baseline, fail.current, fail.n_current) == (0.0, 0.4, 5) and not fail.regressed, "2/5 is no evidence"
    # 2 failures among 10 windows, both in the current 5: C(8,3)/C(10,5) = 56/252 (Fisher, one-sided)
    assert fail.p_value == pytest.approx(math.comb(8, 3) / math.comb(10, 5))
    assert "current: engine_hung x2" in fail.line() and fail.line().startswith("failed_windows: 0/5 -> 2/5")
    assert v.comparisons[0].n_current == 3, "latency over the measured windows"

    dead = [Window(f"current-{i}", failure="launch_failed: CUDA out of memory") for i in range(5)]
    v = compare_arms(base, dead, [P95, ERR], 0.05, 0.05)
    fail = next(c for c in v.comparisons if c.metric == FAILED)
    assert fail.regressed and fail.p_value == pytest.approx(1 / 252) and v.regressions == [fail]
    assert v.untested["p95_task_ms"] == "no measured current window holds it"
    two = compare_arms(base[:2], dead[:2], [P95, ERR], 0.05, 0.05)
    assert two.regressions and two.regressions[0].metric == FAILED, "a current arm that measured nothing fails"
    assert not any(c.metric == FAILED for c in compare_arms(base, base, [P95, ERR], 0.05, 0.05).comparisons)


def test_gates_follow_the_load_protocol():
    assert [g.metric for g in gates("fixed", 0.25, 0.25, 0.02)] == ["p95_task_ms", "task_error_rate"]
    cap = gates("capacity", 0.25, 0.2, 0.02)
    assert [(g.metric, g.worse) for g in cap] == [("p95_task_ms_at_load", "higher"), ("capacity_tps", "lower"),
                                                   ("task_error_rate", "higher")]
    base = [Window(f"b{i}", {"p95_task_ms_at_load": 900.0, "capacity_tps": c, "task_error_rate": 0.0})
            for i, c in enumerate([4.0, 4.2, 3.9, 4.1, 4.05])]
    cur = [Window(f"c{i}", {"p95_task_ms_at_load": 900.0, "capacity_tps": c, "task_error_rate": 0.0})
           for i, c in enumerate([2.0, 2.1, 1.9, 2.05, 2.0])]
    v = compare_arms(base, cur, cap, 0.05, 0.05)
    assert [c.metric for c in v.regressions] == ["capacity_tps"] and v.regressions[0].change < -0.4


def test_a_quality_loss_within_the_tolerance_is_not_flagged():
    """Quality's null is "lost at most the tolerance": McNemar on the change and a paired bootstrap on the loss
    beyond the tolerance must both reject (intersection-union), so the larger p is reported."""
    base = {f"i{i}": 1.0 for i in range(40)}
    one = {**base, "i0": 0.0}  # -0.025: a real loss, within 0.05
    p, test, items = paired_quality_p(base, one, tolerance=0.05)
    assert len(items) == 40 and p > 0.05 and "McNemar" in test and "loss beyond 0.05" in test
    ten = {**base, **{f"i{i}": 0.0 for i in range(10)}}  # -0.25
    p, _, _ = paired_quality_p(base, ten, tolerance=0.05)
    mcnemar = 2 * 0.5 ** 10 / 2  # one-sided exact: all 10 discordant pairs are losses
    assert p == pytest.approx(max(mcnemar, 1 / 10000), rel=0.5) and p < 0.01
    assert paired_quality_p(base, dict(base), tolerance=0.05)[0] == 1.0
