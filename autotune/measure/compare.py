"""Comparing the configs on a front with tests on their differences, not range overlap. Pure statistics, no I/O.

Noise comes from independent windows (repeats of one config), pooled across configs; quality is compared on the
shared evaluation items, paired. Every pairwise test of a comparison is one family, corrected with Holm.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from itertools import combinations

import numpy as np

QUALITY = "quality"  # the objective read from per-item scores, not from windows

_NAN = math.nan


@dataclass(frozen=True)
class Point:
    key: str  # config identity
    label: str  # e.g. "trial 3", for tables
    windows: dict[str, list[float]]  # objective metric -> one value per independent window
    items: dict[str, float]  # eval item id -> score in [0, 1] (mean over the point's windows)
    # metric -> relative width w of the measurement grid: the true value lies in [v, v * (1 + w))
    resolution: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Noise:
    sd: float  # pooled within-config sd of one window (of log values when `log`); NaN when unknown
    df: int  # sum over repeated configs of (windows - 1); 0 when no config was repeated
    log: bool  # analysed on the log scale (every value positive), else linear

    @property
    def known(self) -> bool:
        return self.df > 0 and math.isfinite(self.sd)


@dataclass(frozen=True)
class Estimate:
    mean: float  # geometric mean over windows on the log scale, arithmetic mean on the linear one
    low: float
    high: float
    n: int  # windows


@dataclass(frozen=True)
class Difference:
    a: str  # key of the first point
    b: str  # key of the second point
    metric: str
    delta: float  # b - a of the point values
    ratio: float  # b / a for log-scale metrics (then low/high are ratios too); NaN otherwise
    low: float  # interval of `ratio` when it is finite, else of `delta`
    high: float
    p: float  # two-sided; NaN = untested (never counted as distinct)
    n: int  # common items (quality) or windows of both points
    test: str  # "t", "mcnemar", "wilcoxon" or "untested"
    note: str = ""
    p_holm: float = _NAN
    distinct: bool = False


def _finite(values: Sequence[float]) -> bool:
    return len(values) > 0 and all(math.isfinite(v) for v in values)


def noise_model(points: Sequence[Point], metrics: Sequence[str]) -> dict[str, Noise]:
    """Per metric, the within-config sd of one window pooled ANOVA-style over every point with >= 2 windows.

    Points with a non-finite window carry no spread information and are left out of the pool (their own
    estimates still show the NaN). A metric with any non-positive value is analysed on the linear scale.
    With a resolution w, each point's variance is floored at the grid's quantization variance
    (log(1 + w))^2 / 12 (linear: (mean * w)^2 / 12): identical repeats on a coarse grid are not zero noise.
    """
    out: dict[str, Noise] = {}
    for metric in metrics:
        series = [(p, p.windows[metric]) for p in points if _finite(p.windows.get(metric, []))]
        log = all(v > 0 for _, xs in series for v in xs)
        ss, df = 0.0, 0
        for p, xs in series:
            if len(xs) < 2:
                continue
            x = np.log(xs) if log else np.asarray(xs, dtype=float)
            s = float(np.sum((x - x.mean()) ** 2))
            w = p.resolution.get(metric)
            if w:
                q = math.log1p(w) ** 2 / 12 if log else (float(np.mean(xs)) * w) ** 2 / 12
                s = max(s, (len(xs) - 1) * q)
            ss, df = ss + s, df + len(xs) - 1
        out[metric] = Noise(math.sqrt(ss / df) if df else _NAN, df, log)
    return out


def _scaled_mean(values: Sequence[float], noise: Noise) -> float:
    if noise.log and any(v <= 0 for v in values):
        raise ValueError("non-positive value on a log-scale metric: build the noise model from these points")
    return float(np.mean(np.log(values) if noise.log else values))


def estimate(point: Point, metric: str, noise: Noise, confidence: float = 0.95, fresh: bool = False) -> Estimate:
    """The point's value with a t-interval from the pooled sd and its df; `fresh`: the prediction interval of
    one more window on a freshly launched engine (what a user measures after deploying), sqrt(1 + 1/n) wider.

    Pooling across configs assumes every config has the same window-to-window spread on the analysis scale
    (equal CV on the log scale); in exchange a config measured once gets an interval as soon as any config
    of the study was repeated. NaN bounds while no config was repeated.
    """
    from scipy.stats import t

    xs = point.windows.get(metric, [])
    if not xs:
        return Estimate(_NAN, _NAN, _NAN, 0)
    m = _scaled_mean(xs, noise)
    back = math.exp if noise.log else float
    if not noise.known:
        return Estimate(back(m), _NAN, _NAN, len(xs))
    half = float(t.ppf((1 + confidence) / 2, noise.df)) * noise.sd * math.sqrt(1 / len(xs) + (1 if fresh else 0))
    return Estimate(back(m), back(m - half), back(m + half), len(xs))


def _bootstrap_mean(x: np.ndarray, confidence: float, seed: int) -> tuple[float, float, float]:
    if len(x) == 0:
        return _NAN, _NAN, _NAN
    mean = float(np.mean(x))
    if len(x) < 2:
        return mean, _NAN, _NAN  # one item says nothing about the spread
    if np.all(x == x[0]):
        return mean, mean, mean  # no spread to resample (scipy would warn on the degenerate distribution)
    from scipy.stats import bootstrap

    ci = bootstrap((x,), np.mean, confidence_level=confidence, method="percentile",
                   rng=np.random.default_rng(seed)).confidence_interval
    return mean, float(ci.low), float(ci.high)


def quality_interval(items: Mapping[str, float], confidence: float = 0.95, seed: int = 0) -> tuple[float, float, float]:
    """(mean, low, high) of the item scores: percentile bootstrap over items with a fixed seed."""
    return _bootstrap_mean(np.asarray(list(items.values()), dtype=float), confidence, seed)


def paired_quality(a_items: Mapping[str, float], b_items: Mapping[str, float], confidence: float = 0.95,
                   seed: int = 0) -> Difference:
    """mean(b - a) on the items both were graded on, with a bootstrap interval over those items and a paired test:
    McNemar exact (binomial on the discordant pairs) for 0/1 scores, else Wilcoxon signed-rank (zeros split)."""
    from scipy.stats import binomtest, wilcoxon

    common = sorted(a_items.keys() & b_items.keys())
    a = np.asarray([a_items[i] for i in common], dtype=float)
    b = np.asarray([b_items[i] for i in common], dtype=float)
    unshared = len(a_items.keys() ^ b_items.keys())
    note = f"{unshared} items not graded on both" if unshared else ""
    if not common:
        return Difference("", "", QUALITY, _NAN, _NAN, _NAN, _NAN, _NAN, 0, "untested", "no common items")
    d = b - a
    delta, low, high = _bootstrap_mean(d, confidence, seed)
    if np.all(np.isin(np.concatenate([a, b]), (0.0, 1.0))):
        better, worse = int(np.sum(d > 0)), int(np.sum(d < 0))
        p, test = (binomtest(better, better + worse, 0.5).pvalue if better + worse else 1.0), "mcnemar"
    else:
        p, test = (wilcoxon(d, zero_method="zsplit").pvalue if np.any(d != 0) else 1.0), "wilcoxon"
    return Difference("", "", QUALITY, delta, _NAN, low, high, float(p), len(common), test, note)


def window_difference(a: Point, b: Point, metric: str, noise: Noise, confidence: float = 0.95) -> Difference:
    """b - a of the window means (b / a for log metrics) with a pooled-variance t interval and two-sided p,
    SE = sd * sqrt(1/na + 1/nb) on the pooled df. Unknown noise (no config repeated): untested, p NaN."""
    from scipy.stats import t

    xa, xb = a.windows.get(metric, []), b.windows.get(metric, [])
    ea, eb = estimate(a, metric, noise, confidence), estimate(b, metric, noise, confidence)
    delta = eb.mean - ea.mean
    if not (_finite(xa) and _finite(xb) and noise.known):
        why = "noise unknown: no config was repeated" if _finite(xa) and _finite(xb) else "no finite windows"
        ratio = eb.mean / ea.mean if noise.log else _NAN
        return Difference(a.key, b.key, metric, delta, ratio, _NAN, _NAN, _NAN, len(xa) + len(xb), "untested", why)
    d = _scaled_mean(xb, noise) - _scaled_mean(xa, noise)
    se = noise.sd * math.sqrt(1 / len(xa) + 1 / len(xb))
    half = float(t.ppf((1 + confidence) / 2, noise.df)) * se
    # zero pooled noise (identical repeats, no grid): any difference at all is certain
    p = float(2 * t.sf(abs(d) / se, noise.df)) if se > 0 else float(d == 0)
    if noise.log:
        return Difference(a.key, b.key, metric, delta, math.exp(d), math.exp(d - half), math.exp(d + half), p,
                          len(xa) + len(xb), "t")
    return Difference(a.key, b.key, metric, delta, _NAN, d - half, d + half, p, len(xa) + len(xb), "t")


def holm(ps: Sequence[float]) -> list[float]:
    """Holm-adjusted p-values; NaN (untested) entries stay NaN and are not part of the family."""
    from statsmodels.stats.multitest import multipletests

    tested = [i for i, p in enumerate(ps) if not math.isnan(p)]
    out = [_NAN] * len(ps)
    if tested:
        adjusted = multipletests([ps[i] for i in tested], method="holm")[1]
        for i, q in zip(tested, adjusted, strict=True):
            out[i] = float(q)
    return out


def compare_points(points: Sequence[Point], objectives: Sequence[tuple[str, str]], noise: Mapping[str, Noise],
                   alpha: float = 0.05, confidence: float = 0.95) -> list[Difference]:
    """Every pair x every objective (metric, direction), Holm-corrected over the whole family; `distinct` when
    p_holm <= alpha. Objective "quality" is compared on the items (paired), the others on windows."""
    diffs = []
    for a, b in combinations(points, 2):
        for metric, _direction in objectives:
            if metric == QUALITY:
                diffs.append(replace(paired_quality(a.items, b.items, confidence), a=a.key, b=b.key))
            else:
                diffs.append(window_difference(a, b, metric, noise[metric], confidence))
    adjusted = holm([d.p for d in diffs])
    return [replace(d, p_holm=q, distinct=not math.isnan(q) and q <= alpha) for d, q in zip(diffs, adjusted,
                                                                                          strict=True)]


def equivalence_classes(points: Sequence[Point], differences: Sequence[Difference],
                        order: Sequence[str] | None = None) -> list[list[str]]:
    """Classes of points "equivalent within noise": a pair is distinguishable when any objective differs.

    Walking `order` (keys; default the points' order, e.g. sorted by the first objective), a point joins the
    first class where it is indistinguishable from every member, else opens a new one. Not connected
    components: indistinguishability is not transitive (A~B and B~C while A!~C), and components would chain
    such points into one class that holds a pair the test did tell apart.
    """
    apart = {frozenset((d.a, d.b)) for d in differences if d.distinct}
    classes: list[list[str]] = []
    for key in order if order is not None else [p.key for p in points]:
        home = next((c for c in classes if all(frozenset((key, m)) not in apart for m in c)), None)
        if home is None:
            classes.append([key])
        else:
            home.append(key)
    return classes


def class_labels(classes: Sequence[Sequence[str]]) -> dict[str, str]:
    """key -> class letter: A, B, ..., Z, AA, AB, ... in class order."""
    labels = {}
    for i, members in enumerate(classes):
        name, n = "", i + 1
        while n:
            n, r = divmod(n - 1, 26)
            name = chr(ord("A") + r) + name
        labels.update(dict.fromkeys(members, name))
    return labels


def point_value(point: Point, metric: str, noise: Noise | None) -> float:
    """The point's value of one objective: mean item score for quality, else the (geometric) window mean."""
    if metric == QUALITY:
        return float(np.mean(list(point.items.values()))) if point.items else _NAN
    if noise is None:
        return _NAN
    return estimate(point, metric, noise).mean


def survival(before_front_keys: Sequence[str], after_points: Sequence[Point], objectives: Sequence[tuple[str, str]],
             noise: Mapping[str, Noise] | None = None) -> dict[str, object]:
    """How much of the front survives confirmation: the Pareto set recomputed on the confirmed values.

    Returns kept / dropped (keys of the earlier front), share_kept, added (new on the confirmed front) and
    unmeasured (earlier front keys without a usable confirmed value; also counted as dropped).
    """
    from autotune.pareto import front_indices

    metrics = [m for m, _ in objectives]
    noise = noise if noise is not None else noise_model(after_points, [m for m in metrics if m != QUALITY])
    rows = [(p.key, [point_value(p, m, noise.get(m)) for m in metrics]) for p in after_points]
    usable = [(k, v) for k, v in rows if all(math.isfinite(x) for x in v)]
    front = {usable[i][0] for i in front_indices([v for _, v in usable], [d for _, d in objectives])}
    before = list(dict.fromkeys(before_front_keys))
    kept = [k for k in before if k in front]
    return {"kept": kept, "dropped": [k for k in before if k not in front],
            "share_kept": len(kept) / len(before) if before else _NAN,
            "added": sorted(front - set(before)), "unmeasured": [k for k in before if k not in dict(usable)]}
