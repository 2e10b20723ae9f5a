"""Is the current config worse than the baseline? Nightly's regression test on independent windows. Pure, no I/O.

Two arms, baseline and current, each measured in K windows on fresh engines (interleaved A/B/A/B by the
caller). The unit of analysis is the window, never the task: the tasks of one window share its launch, its
cache and its load, so they are not independent draws.

- **Window metrics** (latency p95, capacity at SLA, task error rate): one value per window and arm, compared by
  an exact one-sided permutation test on the difference of the arms' means. Latency and capacity are tested on
  log values (their noise is multiplicative) and reported as geometric means, the scale the test works on;
  a metric with a non-positive value falls back to the linear scale (decided on the pooled values, so the
  test stays exact). The error rate is tested on the linear scale.
- **Quality**, paired by evaluation item: each arm's item score is its mean over the arm's measured windows,
  and the arms are compared item by item: McNemar's exact test when every item score is 0 or 1, else the
  one-sided Wilcoxon signed-rank test.
- **Failed windows** (a window whose run raised a TrialError): Fisher's exact test on failed/measured counts
  (the permutation test on failure indicators). It joins the family only on nights where some window failed:
  with no failure it cannot reject (as in Tarone's method for discrete tests), and leaving it out only makes
  the family smaller when it could never count. A current arm with no measured window at all is a regression
  whatever the test says: a gate cannot pass on nothing. The metrics above use the measured windows only.
- **Family**: every metric tested that night, Holm-corrected (statsmodels). A regression needs both a
  Holm-adjusted p <= alpha and a change in the worse direction beyond the metric's tolerance (relative for
  latency and capacity, absolute for quality and error rate), so the chance that an unchanged config raises any
  regression on a night is at most alpha.

Power: the smallest p an exact permutation test over K+K windows can give is 1/C(2K, K) (K=3: 0.05, K=4: 0.014,
K=5: 0.004), and Holm's first step over m metrics needs p <= alpha/m. `windows_needed` gives the smallest K that
can reach it; fewer windows per arm can never flag a regression. See benchmarks/nightly_power.py for power.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from autotune.measure.compare import holm  # one Holm for the front and the nightly family

Worse = Literal["higher", "lower"]
EXACT_LIMIT = 50_000  # exact enumeration up to this many arrangements of the windows, else 9,999 resamples
FAILED = "failed_windows"
QUALITY = "quality"


@dataclass
class Window:
    """One run of one arm: its metrics and per-item scores, or the TrialError that stopped it."""

    label: str  # e.g. "baseline-0"
    metrics: dict[str, float] = field(default_factory=dict)
    item_scores: dict[str, float] = field(default_factory=dict)
    failure: str = ""  # "reason: message" of a failed run; "" when it measured

    @property
    def ok(self) -> bool:
        return not self.failure

    @property
    def reason(self) -> str:
        return self.failure.split(":", 1)[0]


@dataclass(frozen=True)
class Gate:
    """A window metric under test: the direction that is worse, the scale, the tolerance."""

    metric: str
    worse: Worse
    log: bool  # tested on log values; the tolerance is then relative, else absolute
    tolerance: float
    unit: str = ""


@dataclass
class Comparison:
    metric: str
    baseline: float  # mean over the baseline windows (geometric on the log scale); quality: mean item score
    current: float
    change: float  # relative (log-scale metrics) or absolute (quality, error rate, failed windows)
    p_value: float  # raw one-sided p
    p_adjusted: float  # Holm over the night's family
    test: str  # e.g. "permutation test over 5+5 windows"
    n_baseline: int  # windows (items for quality)
    n_current: int
    regressed: bool
    relative: bool
    unit: str = ""
    note: str = ""

    @property
    def confidence(self) -> float:
        return 1.0 - self.p_adjusted

    def line(self) -> str:
        unit = f" {self.unit}" if self.unit else ""
        if self.metric == FAILED:
            values = f"{_frac(self.baseline, self.n_baseline)} -> {_frac(self.current, self.n_current)}"
        else:
            values = f"{self.baseline:.4g} -> {self.current:.4g}{unit}"
        change = f"{self.change:+.0%}" if self.relative else f"{self.change:+.3f}"
        note = f", {self.note}" if self.note else ""
        return (f"{self.metric}: {values} ({change}{note}), {self.test}, Holm-adjusted p={self.p_adjusted:.2g} "
                f"(confidence {self.confidence:.1%})")

    def row(self) -> dict[str, object]:
        return {**self.__dict__, "confidence": self.confidence, "line": self.line()}


@dataclass
class Verdict:
    comparisons: list[Comparison]  # the tested family
    untested: dict[str, str]  # metric -> why it was not tested
    alpha: float

    @property
    def regressions(self) -> list[Comparison]:
        return [c for c in self.comparisons if c.regressed]


def _frac(share: float, n: int) -> str:
    return f"{round(share * n)}/{n}"


def gates(protocol: str, latency_tolerance: float, capacity_tolerance: float, error_tolerance: float,
          ) -> list[Gate]:
    """The window metrics nightly tests: p95 latency (at the operating load in a capacity study), capacity at SLA
    (capacity studies), the task error rate."""
    capacity = protocol == "capacity"
    out = [Gate("p95_task_ms_at_load" if capacity else "p95_task_ms", "higher", True, latency_tolerance, "ms")]
    if capacity:
        out.append(Gate("capacity_tps", "lower", True, capacity_tolerance, "tasks/s"))
    out.append(Gate("task_error_rate", "higher", False, error_tolerance))
    return out


def min_p(k: int) -> float:
    """The smallest p of an exact permutation test over k+k windows."""
    return 1.0 / math.comb(2 * k, k)


def windows_needed(alpha: float, metrics: int) -> int:
    """The smallest windows per arm whose best exact p passes Holm's first step over `metrics` tests."""
    k = 2
    while min_p(k) > alpha / max(metrics, 1) * (1 + 1e-9):
        k += 1
    return k


def power_warning(k: int, alpha: float, metrics: int) -> str | None:
    """One line when k windows per arm can never flag a regression at alpha over `metrics` tests."""
    need = windows_needed(alpha, metrics)
    if k >= need:
        return None
    return (f"{k} windows per arm cannot detect a regression at alpha {alpha:g} over {metrics} metrics: the "
            f"exact test's smallest p is 1/C({2 * k},{k}) = {min_p(k):.3g} > alpha/{metrics} = "
            f"{alpha / metrics:.3g}; use --confirm {need} or more")


def permutation_p(baseline: Sequence[float], current: Sequence[float], worse: Worse, log: bool,
                  seed: int = 0, tolerance: float = 0.0, relative: bool = True) -> float:
    """One-sided p that `current` is worse than `baseline` by more than `tolerance` (relative: a factor 1 + tol,
    or 1 - tol when lower is worse; else absolute): a permutation test (scipy) on the difference of means, of log
    values when `log`, after moving the current windows back by the tolerance. So H0 is "worse by at most the
    tolerance", and a tolerated change is flagged at most alpha of the time, not only an unchanged config.
    Exact when the arrangements are few, else 9,999 seeded resamples."""
    from scipy.stats import permutation_test

    b, c = np.asarray(baseline, float), np.asarray(current, float)
    if np.ptp(np.concatenate([b, c])) == 0:  # every window equal: no evidence either way
        return 1.0
    if tolerance:
        sign = 1.0 if worse == "higher" else -1.0
        c = c / (1.0 + sign * tolerance) if relative else c - sign * tolerance
    if log:
        b, c = np.log(b), np.log(c)
    exact = math.comb(len(b) + len(c), len(c)) <= EXACT_LIMIT

    def diff(x, y, axis):
        return np.mean(x, axis=axis) - np.mean(y, axis=axis)

    res = permutation_test((c, b), diff, permutation_type="independent", vectorized=True,
                           n_resamples=np.inf if exact else 9999, rng=np.random.default_rng(seed),
                           alternative="greater" if worse == "higher" else "less")
    return float(min(1.0, res.pvalue))


def paired_quality_p(baseline: Mapping[str, float], current: Mapping[str, float],
                     tolerance: float = 0.0) -> tuple[float, str, list[str]]:
    """(one-sided p that current scores lower by more than `tolerance`, test description, common items) on the
    items both arms scored. The change itself: McNemar exact for 0/1 scores, else Wilcoxon signed-rank. With a
    tolerance the p is the larger of that and a paired bootstrap test of H0 "the mean loss is at most the
    tolerance" (an intersection-union test: flagging needs both, so a tolerated loss is flagged at most alpha of
    the time)."""
    p, test, items = _quality_change_p(baseline, current)
    if not tolerance or not items:
        return p, test, items
    d = np.array([current[i] - baseline[i] for i in items], float)
    means = d[np.random.default_rng(0).integers(0, len(d), (9999, len(d)))].mean(axis=1)
    p_tol = (1 + int(np.sum(means >= -tolerance))) / (len(means) + 1)
    return max(p, p_tol), f"{test}; loss beyond {tolerance:g}: paired bootstrap p={p_tol:.2g}", items


def _quality_change_p(baseline: Mapping[str, float], current: Mapping[str, float]) -> tuple[float, str, list[str]]:
    from scipy.stats import binomtest, wilcoxon

    items = sorted(set(baseline) & set(current))
    b = np.array([baseline[i] for i in items], float)
    c = np.array([current[i] for i in items], float)
    if np.all(np.isin(b, (0.0, 1.0))) and np.all(np.isin(c, (0.0, 1.0))):
        lost, gained = int(np.sum((b == 1) & (c == 0))), int(np.sum((b == 0) & (c == 1)))
        p = float(binomtest(lost, lost + gained, 0.5, alternative="greater").pvalue) if lost + gained else 1.0
        return p, f"McNemar exact test over {len(items)} items ({lost} lost, {gained} gained)", items
    d = c - b
    test = f"Wilcoxon signed-rank test over {len(items)} items"
    if not np.any(d != 0):
        return 1.0, test, items
    return float(wilcoxon(d, alternative="less").pvalue), test, items


def arm_items(windows: Sequence[Window]) -> dict[str, float]:
    """Each evaluation item's score averaged over the arm's measured windows that scored it."""
    scores: dict[str, list[float]] = {}
    for w in windows:
        if w.ok:
            for item, s in w.item_scores.items():
                scores.setdefault(item, []).append(float(s))
    return {item: float(np.mean(v)) for item, v in scores.items()}


def _values(windows: Sequence[Window], metric: str) -> list[float]:
    return [float(w.metrics[metric]) for w in windows
            if w.ok and metric in w.metrics and math.isfinite(float(w.metrics[metric]))]


def _center(values: Sequence[float], log: bool) -> float:
    return float(np.exp(np.mean(np.log(values)))) if log else float(np.mean(values))


def _relative(base: float, cur: float) -> float:
    if base == 0:
        return 0.0 if cur == 0 else math.copysign(math.inf, cur)
    return cur / base - 1.0


def _reasons(windows: Sequence[Window]) -> str:
    counts = Counter(w.reason for w in windows if not w.ok)
    return ", ".join(f"{r} x{n}" if n > 1 else r for r, n in counts.items())


def compare_arms(baseline: Sequence[Window], current: Sequence[Window], window_gates: Sequence[Gate], alpha: float,
                 quality_tolerance: float) -> Verdict:
    """Test every gate metric, quality and (when some window failed) the failed windows; Holm over them."""
    tested: list[Comparison] = []
    untested: dict[str, str] = {}
    for g in window_gates:
        b, c = _values(baseline, g.metric), _values(current, g.metric)
        if not b or not c:
            untested[g.metric] = f"no measured {'baseline' if not b else 'current'} window holds it"
            continue
        log = g.log and min(b + c) > 0
        p = permutation_p(b, c, g.worse, log, tolerance=g.tolerance, relative=g.log)
        bv, cv = _center(b, log), _center(c, log)
        change = _relative(bv, cv) if g.log else cv - bv
        worse = change > g.tolerance if g.worse == "higher" else -change > g.tolerance
        tested.append(Comparison(g.metric, bv, cv, change, p, p, f"permutation test over {len(b)}+{len(c)} windows",
                                 len(b), len(c), worse, g.log, g.unit))

    b_items, c_items = arm_items(baseline), arm_items(current)
    if not b_items or not c_items:
        untested[QUALITY] = "no per-item scores"
    else:
        p, test, items = paired_quality_p(b_items, c_items, quality_tolerance)
        if not items:
            untested[QUALITY] = "no evaluation item scored in both arms"
        else:
            bq = float(np.mean([b_items[i] for i in items]))
            cq = float(np.mean([c_items[i] for i in items]))
            tested.append(Comparison(QUALITY, bq, cq, cq - bq, p, p, test, len(items), len(items),
                                     bq - cq > quality_tolerance, False))

    fb, fc = sum(not w.ok for w in baseline), sum(not w.ok for w in current)
    nb, nc = len(baseline), len(current)
    if fb + fc and nb and nc:
        from scipy.stats import fisher_exact

        p = float(fisher_exact([[fc, nc - fc], [fb, nb - fb]], alternative="greater").pvalue)
        note = "; ".join(f"{arm}: {_reasons(ws)}" for arm, ws in (("baseline", baseline), ("current", current))
                         if any(not w.ok for w in ws))
        tested.append(Comparison(FAILED, fb / nb, fc / nc, fc / nc - fb / nb, p, p,
                                 f"Fisher's exact test over {nb}+{nc} windows", nb, nc, fc / nc > fb / nb, False,
                                 note=note))

    for comp, adjusted in zip(tested, holm([c.p_value for c in tested]), strict=True):
        comp.p_adjusted = adjusted
        beyond = comp.regressed  # the change passed the tolerance
        comp.regressed = beyond and adjusted <= alpha
        if comp.metric == FAILED and nc and fc == nc:
            comp.regressed = True  # nothing measured: the gate cannot pass
    return Verdict(tested, untested, alpha)
