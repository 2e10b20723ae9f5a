"""Front comparison statistics against hand-computed cases (the arithmetic is in the comments)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import t

from autotune.measure.compare import (
    Difference,
    Noise,
    Point,
    class_labels,
    compare_points,
    equivalence_classes,
    estimate,
    holm,
    noise_model,
    paired_quality,
    quality_interval,
    survival,
    window_difference,
)


def pt(key: str, items: dict[str, float] | None = None, resolution: dict[str, float] | None = None,
       **windows: list[float]) -> Point:
    return Point(key, key, dict(windows), items or {}, resolution or {})


def test_pooled_sd_on_the_log_scale() -> None:
    # logs: a = {0, .2}, mean .1, SS = .01 + .01 = .02 (1 df); b = {1, 1.1, 1.3}, mean 1.1333,
    # SS = .017778 + .001111 + .027778 = .046667 (2 df); c has one window and adds nothing.
    # s^2 = (.02 + .046667) / 3 = .022222, s = .149071
    a = pt("a", lat=[1.0, math.exp(0.2)])
    b = pt("b", lat=[math.exp(1.0), math.exp(1.1), math.exp(1.3)])
    c = pt("c", lat=[5.0])
    noise = noise_model([a, b, c], ["lat"])["lat"]
    assert noise.log and noise.df == 3
    assert noise.sd == pytest.approx(math.sqrt(0.2 / 9), rel=1e-9)


def test_pooled_sd_falls_back_to_linear_and_unknown() -> None:
    # a non-positive value forces the linear scale: a = {0, 2}: SS = 1 + 1 = 2; b = {4, 6, 8}: SS = 4 + 0 + 4 = 8
    # s^2 = 10 / 3
    noise = noise_model([pt("a", err=[0.0, 2.0]), pt("b", err=[4.0, 6.0, 8.0])], ["err", "lat"])
    assert not noise["err"].log and noise["err"].df == 3
    assert noise["err"].sd == pytest.approx(math.sqrt(10 / 3))
    assert noise["lat"].df == 0 and math.isnan(noise["lat"].sd) and not noise["lat"].known


def test_quantization_floor_gives_identical_repeats_nonzero_noise() -> None:
    # identical repeats: SS = 0 on both points; floor per window is q = log(1.25)^2 / 12
    # a: 1 df -> SS >= q; b: 2 df -> SS >= 2q; s^2 = 3q / 3 = q, s = log(1.25) / sqrt(12) = .064416
    points = [pt("a", {}, {"cap": 0.25}, cap=[10.0, 10.0]), pt("b", {}, {"cap": 0.25}, cap=[20.0, 20.0, 20.0])]
    assert noise_model(points, ["cap"])["cap"].sd == pytest.approx(math.log(1.25) / math.sqrt(12))
    bare = [pt("a", cap=[10.0, 10.0]), pt("b", cap=[20.0, 20.0, 20.0])]
    assert noise_model(bare, ["cap"])["cap"].sd == 0.0


def test_estimate_t_interval() -> None:
    # linear: mean 13, n 4, t(.975, 4) = 2.776445, half = 2.776445 * 2 / sqrt(4) = 2.776445
    e = estimate(pt("a", x=[10.0, 12.0, 14.0, 16.0]), "x", Noise(2.0, 4, False))
    assert (e.mean, e.n) == (13.0, 4)
    assert (e.low, e.high) == pytest.approx((13 - 2.776445, 13 + 2.776445), abs=1e-6)
    # log, one window, pooled sd .1 on 10 df: t(.975, 10) = 2.228139, bounds 100 * exp(-/+ .2228139)
    e = estimate(pt("b", x=[100.0]), "x", Noise(0.1, 10, True))
    assert e.mean == pytest.approx(100.0)
    assert (e.low, e.high) == pytest.approx((100 * math.exp(-0.2228139), 100 * math.exp(0.2228139)), rel=1e-6)
    unknown = estimate(pt("c", x=[4.0]), "x", Noise(math.nan, 0, True))
    assert unknown.mean == pytest.approx(4.0) and math.isnan(unknown.low) and math.isnan(unknown.high)


def test_quality_interval_degenerate_cases() -> None:
    assert quality_interval({"a": 0.5, "b": 0.5, "c": 0.5}) == (0.5, 0.5, 0.5)
    mean, low, high = quality_interval({"a": 0.3})
    assert mean == 0.3 and math.isnan(low) and math.isnan(high)
    assert all(math.isnan(v) for v in quality_interval({}))
    mean, low, high = quality_interval({str(i): float(i % 2) for i in range(40)})
    assert mean == 0.5 and low < 0.5 < high


def test_paired_quality_two_items() -> None:
    # differences {0, 1}: bootstrap means 0, .5, 1 with probabilities 1/4, 1/2, 1/4 -> 95 % percentile [0, 1];
    # 0/1 scores -> McNemar exact on 1 discordant pair: p = binomtest(1, 1) = 1
    d = paired_quality({"x": 0.0, "y": 0.0}, {"x": 0.0, "y": 1.0})
    assert (d.delta, d.low, d.high) == (0.5, 0.0, 1.0)
    assert (d.test, d.p, d.n) == ("mcnemar", 1.0, 2)


def test_paired_quality_constant_difference() -> None:
    # d = .25 on both items -> interval [.25, .25]; graded scores -> Wilcoxon, exact with n = 2 all positive:
    # P(W+ = 3) = 1/4, two-sided p = 1/2
    d = paired_quality({"x": 0.25, "y": 0.5, "z": 0.9}, {"x": 0.5, "y": 0.75})
    assert (d.delta, d.low, d.high) == (0.25, 0.25, 0.25)
    assert d.test == "wilcoxon" and d.p == pytest.approx(0.5) and d.n == 2
    assert "1 items" in d.note  # z was graded on one side only


def test_mcnemar_exact_p() -> None:
    # a right where b is wrong on 6 items, 4 concordant: discordant table 0 vs 6 -> p = 2 * .5^6 = .03125
    a = {f"i{k}": 1.0 for k in range(10)}
    b = {f"i{k}": 0.0 if k < 6 else 1.0 for k in range(10)}
    d = paired_quality(a, b)
    assert d.test == "mcnemar" and d.p == pytest.approx(0.03125)
    assert d.delta == pytest.approx(-0.6)
    same = paired_quality(a, a)
    assert same.p == 1.0 and same.delta == 0.0


def test_window_difference_ratio() -> None:
    # logs 4.60517 vs 4.90517: d = .3, SE = .1 * sqrt(1 + 1) = .141421, t stat = 2.12132 on 10 df;
    # half = 2.228139 * .141421 = .315108 -> ratio exp(.3) = 1.349859 in [exp(-.015108), exp(.615108)]
    noise = Noise(0.1, 10, True)
    d = window_difference(pt("a", x=[100.0]), pt("b", x=[100 * math.exp(0.3)]), "x", noise)
    assert d.ratio == pytest.approx(math.exp(0.3))
    assert (d.low, d.high) == pytest.approx((math.exp(-0.015108), math.exp(0.615108)), rel=1e-5)
    assert d.p == pytest.approx(2 * t.sf(0.3 / (0.1 * math.sqrt(2)), 10))
    assert d.delta == pytest.approx(100 * (math.exp(0.3) - 1))
    # linear: d = 2, SE = 1 * sqrt(1/2 + 1/2) = 1, half = t(.975, 4) = 2.776445
    lin = window_difference(pt("a", x=[1.0, 3.0]), pt("b", x=[4.0, 4.0]), "x", Noise(1.0, 4, False))
    assert math.isnan(lin.ratio) and lin.delta == 2.0
    assert (lin.low, lin.high) == pytest.approx((2 - 2.776445, 2 + 2.776445), abs=1e-6)


def test_unknown_noise_is_untested_and_not_distinct() -> None:
    points = [pt("a", x=[1.0]), pt("b", x=[9.0])]
    noise = noise_model(points, ["x"])
    d = window_difference(points[0], points[1], "x", noise["x"])
    assert math.isnan(d.p) and d.test == "untested" and "noise unknown" in d.note
    (only,) = compare_points(points, [("x", "maximize")], noise)
    assert math.isnan(only.p_holm) and not only.distinct


def test_holm_hand_adjusted() -> None:
    # sorted .01, .03, .04 with m = 3: .01 * 3 = .03; .03 * 2 = .06; max(.04 * 1, .06) = .06; NaN stays out
    adjusted = holm([0.01, 0.04, 0.03, math.nan])
    assert adjusted[:3] == pytest.approx([0.03, 0.06, 0.06])
    assert math.isnan(adjusted[3])


def test_compare_points_family_and_distinct() -> None:
    # capacity logs differ by log(2) = .693 with pooled sd ~.05: clearly apart; quality is identical -> p = 1
    items = {f"i{k}": float(k % 2) for k in range(6)}
    a = pt("a", items, cap=[10.0, 10.5, 9.5])
    b = pt("b", items, cap=[20.0, 21.0, 19.0])
    diffs = compare_points([a, b], [("cap", "maximize"), ("quality", "maximize")], noise_model([a, b], ["cap"]))
    cap, quality = diffs
    assert (cap.a, cap.b, quality.a, quality.b) == ("a", "b", "a", "b")
    assert cap.distinct and cap.p_holm == pytest.approx(min(1.0, 2 * cap.p))  # family of 2, smaller p first
    assert quality.p == 1.0 and quality.p_holm == 1.0 and not quality.distinct


def test_identical_points_are_not_distinct() -> None:
    rng = np.random.default_rng(7)
    items = {f"i{k}": float(v) for k, v in enumerate(rng.integers(0, 2, 30))}
    cap, lat = list(rng.lognormal(3, 0.1, 3)), list(rng.lognormal(0, 0.1, 3))
    points = [pt("x", items, cap=cap, lat=lat), pt("y", dict(items), cap=list(cap), lat=list(lat))]
    objectives = [("cap", "maximize"), ("lat", "minimize"), ("quality", "maximize")]
    diffs = compare_points(points, objectives, noise_model(points, ["cap", "lat"]))
    assert len(diffs) == 3 and not any(d.distinct for d in diffs)
    assert all(d.p == pytest.approx(1.0) for d in diffs)
    assert equivalence_classes(points, diffs) == [["x", "y"]]


def _diff(a: str, b: str, distinct: bool) -> Difference:
    return Difference(a, b, "x", 0.0, math.nan, 0.0, 0.0, 0.5, 2, "t", distinct=distinct)


def test_equivalence_classes_are_not_chained() -> None:
    # A~B, B~C, A!~C: C cannot join A's class, and a class never holds a distinguishable pair
    points = [pt("A"), pt("B"), pt("C")]
    diffs = [_diff("A", "B", False), _diff("B", "C", False), _diff("A", "C", True)]
    assert equivalence_classes(points, diffs) == [["A", "B"], ["C"]]
    assert equivalence_classes(points, diffs, order=["C", "B", "A"]) == [["C", "B"], ["A"]]
    assert class_labels([["A", "B"], ["C"]]) == {"A": "A", "B": "A", "C": "B"}
    assert class_labels([[str(i)] for i in range(28)])["27"] == "AB"


def test_survival_counts() -> None:
    # confirmed (thr max, lat min): a (100, 1.0), b (90, 1.2), c (50, .5), d (120, 2.0).
    # b is dominated by a; the front is a, c, d. Earlier front a, b, c, e (e not re-measured):
    # kept a, c; dropped b, e; share 2/4; d is new
    after = [pt("a", thr=[100.0], lat=[1.0]), pt("b", thr=[90.0], lat=[1.2]),
             pt("c", thr=[50.0], lat=[0.5]), pt("d", thr=[120.0], lat=[2.0])]
    s = survival(["a", "b", "c", "e"], after, [("thr", "maximize"), ("lat", "minimize")])
    assert s["kept"] == ["a", "c"] and s["dropped"] == ["b", "e"]
    assert s["share_kept"] == 0.5 and s["added"] == ["d"] and s["unmeasured"] == ["e"]
