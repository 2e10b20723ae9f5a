"""One config is one point: every measured window of an identical config merges into that config's estimate.

A config's windows are its full-fidelity trials (the sampler proposed it; a re-proposal is not measured again,
see search/one_trial.py) and its `--confirm` windows. Once confirmed, the estimate uses the confirmation windows
only: the search window that put the config on the front was selected for being good, so it is biased. The
window-to-window noise is pooled over every config with two or more windows (autotune.measure.compare).
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import optuna

from autotune.config import SpaceConfig, TrialConfig
from autotune.measure import (
    QUALITY,
    CapacityPrior,
    Noise,
    Point,
    class_labels,
    compare_points,
    equivalence_classes,
    estimate,
    noise_model,
    quality_interval,
)

ALPHA = 0.05  # family-wise error rate of the "distinguishable" statements on the front (Holm)


# knobs added after studies recorded their keys: unset (None), they are left out, so a config keeps its identity
ADDED_LATER = {"cpu_threads_bind", "cpu_reserved_cores", "route_one_call", "route_subquestions", "route_agents",
               "route_judge", "route_reask", "overflow_to", "overflow_at"}


def config_key(config: TrialConfig) -> str:
    """The identity of a config: every knob, sampled or default, server and client."""
    parts = config.model_dump(mode="json")
    for part in parts.values():
        for name in ADDED_LATER & part.keys():
            if part[name] is None:
                del part[name]
    if parts["server"].get("kv_cache_space_gb") is not None:  # a float once (1.0): keys recorded then still match
        parts["server"]["kv_cache_space_gb"] = float(parts["server"]["kv_cache_space_gb"])
    blob = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha1(blob.encode()).hexdigest()[:16]


def trial_key(t, space: SpaceConfig | None = None) -> str:
    """A trial's config key, recorded when it started. A trial from before config keys: rebuilt from its
    parameters and the space's fixed knobs (as the sampler built it), so it merges with new trials of the same
    config; without a space, a key of its parameters."""
    if t.user_attrs.get("config_key"):
        return t.user_attrs["config_key"]
    if space is not None:
        from autotune.config import split_values
        from autotune.samplers import suggest

        try:
            return config_key(split_values(suggest(optuna.trial.FixedTrial(t.params), space)))
        except (ValueError, KeyError, TypeError):
            pass  # the space changed since: the parameters are all there is
    return "params:" + json.dumps(t.params, sort_keys=True, default=str)


CENSORABLE = ("capacity_tps", "usd_per_1k_tasks")  # read off a capacity search, whose bracket may stay open


def merged_cost(wins: list[dict[str, Any]], cap: float, api: float) -> float:
    """$ per 1k tasks at the merged capacity: the self-hosted part is hours spread over capacity (0 when no call
    went to the host: an API-only plan, free or not), the API part per token, whatever the capacity; inf when the
    host is paid for and nothing passed."""
    api = api if api == api else 0.0
    per_hour = []
    for w in wins:
        m = w["metrics"]
        hosted = m.get("usd_per_1k_tasks_hosted", m.get("usd_per_1k_tasks", math.nan) - m.get("usd_per_1k_tasks_api",
                                                                                                0.0))
        if 0 < m.get("capacity_tps", 0) < math.inf and 0 <= hosted < math.inf:
            per_hour.append(hosted * m["capacity_tps"])
    if per_hour and cap > 0:
        return api + per_hour[0] / cap
    return api if wins and all(w["metrics"].get("usd_per_1k_tasks_hosted") == 0 for w in wins) else math.inf


def window_of(metrics: dict[str, float], items: dict[str, float] | None, **extra: Any) -> dict[str, Any]:
    return {"metrics": {k: v for k, v in metrics.items() if v == v}, "items": dict(items or {}), **extra}


@dataclass
class ConfigPoint:
    key: str
    trials: list[Any]  # its measured, complete, full-fidelity trials (search windows), oldest first
    confirm: list[dict[str, Any]] = field(default_factory=list)  # confirmation windows
    noise: list[dict[str, Any]] = field(default_factory=list)  # repeats of an unselected config (search/noise_window)
    log_metrics: set[str] = field(default_factory=set)  # merged by geometric mean (the log-scale objectives)

    @property
    def number(self) -> int:
        return self.trials[0].number

    @property
    def confirmed(self) -> bool:
        return bool(self.confirm_ok())

    def confirm_ok(self) -> list[dict[str, Any]]:
        return [w for w in self.confirm if not w.get("failed")]

    @property
    def failed_windows(self) -> int:
        return sum(1 for w in [*self.confirm, *self.noise] if w.get("failed"))

    @property
    def confirm_failed(self) -> bool:
        """Every confirmation window failed: the config could not be re-measured, so it is not recommendable."""
        return bool(self.confirm) and not self.confirm_ok()

    def search_windows(self) -> list[dict[str, Any]]:
        """Its trials' windows and its noise repeats (neither was selected for being good)."""
        return [*(window_of(t.user_attrs.get("metrics", {}), t.user_attrs.get("item_scores")) for t in self.trials),
                *(w for w in self.noise if not w.get("failed"))]

    def windows(self) -> list[dict[str, Any]]:
        """The windows the estimate uses: the confirmation windows when there are any, else the search ones."""
        return self.confirm_ok() or self.search_windows()

    def metrics(self) -> dict[str, float]:
        """Every metric averaged over the estimate's windows (NaN-skipping); quality from the merged items."""
        wins = self.windows()
        names = {k for w in wins for k in w["metrics"]}
        out = {}
        for k in names:
            xs = [w["metrics"][k] for w in wins if k in w["metrics"] and isinstance(w["metrics"][k], int | float)]
            # the log-scale objectives: the geometric mean, the centre of their interval (autotune.measure.compare)
            out[k] = float(xs[0]) if len(xs) == 1 else float(np.exp(np.mean(np.log(xs)))) \
                if k in self.log_metrics and xs and min(xs) > 0 and max(xs) < math.inf \
                else float(np.mean(xs)) if xs else math.nan
        if "capacity_tps" in out and "usd_per_1k_tasks" in out:  # cost at the merged capacity, not a mean of costs
            out["usd_per_1k_tasks"] = merged_cost(wins, out["capacity_tps"], out.get("usd_per_1k_tasks_api", 0.0))
        items = self.items()
        if items:
            out[QUALITY], out["quality_ci_low"], out["quality_ci_high"] = quality_interval(items)
        out["windows"] = float(len(wins))
        return out

    def items(self) -> dict[str, float]:
        per: dict[str, list[float]] = {}
        for w in self.windows():
            for item, score in w["items"].items():
                if score is not None:
                    per.setdefault(item, []).append(float(score))
        return {k: float(np.mean(v)) for k, v in per.items()}

    def point(self, metrics: list[str], resolution: dict[str, float], all_windows: bool = False) -> Point:
        """`all_windows` (the noise pool): every window but a capacity-0 one (nothing passed: an overloaded
        system, not the spread of a working one), and for capacity and cost not one whose bracket stayed open above
        (a search stopped at max_rate, or by a quality floor before a level failed): such values bound capacity,
        not measure it."""
        wins = [*self.search_windows(), *self.confirm_ok()] if all_windows else self.windows()
        if all_windows:
            wins = [w for w in wins if w["metrics"].get("capacity_tps", 1.0) > 0]

        def kept(w: dict[str, Any], m: str) -> bool:
            return not all_windows or m not in CENSORABLE or w["metrics"].get("capacity_bracket", 1.0) < math.inf

        res = dict(resolution)
        if math.isfinite(b := self.bracket()):  # the grid this config was measured on, not the one asked for
            res["capacity_tps"] = res["usd_per_1k_tasks"] = max(b - 1.0, 0.0)
        return Point(key=self.key, label=f"trial {self.number}", resolution=res, items=self.items(),
                     windows={m: [w["metrics"][m] for w in wins if m in w["metrics"] and kept(w, m)]
                              for m in metrics})

    def bracket(self) -> float:
        """The capacity brackets (first failing / last passing) of the estimate's windows, their geometric mean;
        inf when one was not closed from above; NaN before brackets were recorded."""
        got = [w["metrics"]["capacity_bracket"] for w in self.windows() if "capacity_bracket" in w["metrics"]]
        return float(np.exp(np.mean(np.log(got)))) if got and min(got) >= 1 else math.nan


def study_points(study, space: SpaceConfig) -> list[ConfigPoint]:
    """Complete, full-fidelity, measured trials grouped by config, in order of first measurement."""
    groups: dict[str, ConfigPoint] = {}
    for t in study.get_trials(deepcopy=False, states=[optuna.trial.TrialState.COMPLETE]):
        if t.user_attrs.get("fidelity", "full") != "full" or t.user_attrs.get("duplicate_of") is not None:
            continue
        key = trial_key(t, space)
        groups.setdefault(key, ConfigPoint(key, [])).trials.append(t)
    confirm, noise = study.user_attrs.get("confirm", {}), study.user_attrs.get("noise", {})
    logs = {*shown_metrics(space)}  # capacity too: cost = k / capacity stays their geometric mean
    for key, cp in groups.items():
        cp.confirm = list(confirm.get(key, [])) if isinstance(confirm.get(key), list) else []
        cp.noise = list(noise.get(key, [])) if isinstance(noise.get(key), list) else []
        cp.log_metrics = logs
    return list(groups.values())


def capacity_priors(study) -> list[CapacityPrior]:
    """Every complete, full-fidelity measurement of the study with a capacity and a first-level estimate, oldest
    first: where a new trial's capacity levels start (autotune.measure.levels.first_estimate)."""
    out = []
    for t in study.get_trials(deepcopy=False, states=[optuna.trial.TrialState.COMPLETE]):
        m = t.user_attrs.get("metrics", {})
        if t.user_attrs.get("fidelity", "full") == "full" and m.get("capacity_tps") and m.get("capacity_estimate"):
            out.append(CapacityPrior(m["capacity_tps"], m["capacity_estimate"], t.user_attrs.get("server") or {},
                                     t.user_attrs.get("config_key", "")))
    return out


def resolution(space: SpaceConfig, workload=None) -> dict[str, float]:
    """Relative grid width of metrics read off a bisection (capacity and the cost derived from it)."""
    tol = getattr(getattr(workload, "capacity", None), "tolerance", None) if workload is not None else None
    tol = tol if tol is not None else 0.2
    return {"capacity_tps": tol, "usd_per_1k_tasks": tol}


def window_metrics(space: SpaceConfig) -> list[str]:
    return [o.metric for o in space.objectives if o.metric != QUALITY]


SHOWN = ("capacity_tps", "p95_task_ms_at_load")  # shown beside the objectives, with intervals, when measured


def shown_metrics(space: SpaceConfig) -> list[str]:
    """The window objectives and what a capacity search always shows beside them (intervals for all)."""
    names = window_metrics(space)
    return names + [m for m in SHOWN if m not in names]


def study_noise(study, points: list[ConfigPoint], space: SpaceConfig, res: dict[str, float]) -> dict[str, Noise]:
    """Window-to-window noise per objective, pooled over every config measured more than once (all its windows:
    a selected search window only widens the spread, so this errs on the safe side), and with the host's noise
    prior when the study adopted one (autotune.search.noise_prior)."""
    from autotune.search.noise_prior import pooled, study_prior

    names = shown_metrics(space)
    return pooled(noise_model([cp.point(names, res, all_windows=True) for cp in points], names), study_prior(study))


@dataclass
class Judgement:
    """Intervals, Holm-tested differences and equivalence classes of a set of front members."""

    noise: dict[str, Noise]
    labels: dict[str, str]  # key -> class letter ("?" when a difference could not be tested)
    untested: list[str]  # objectives whose noise is unknown (no config measured twice)
    differences: list[Any]


def judge_front(front: list[ConfigPoint], space: SpaceConfig, noise: dict[str, Noise],
                res: dict[str, float]) -> Judgement:
    names = window_metrics(space)
    objectives = [(o.metric, o.direction) for o in space.objectives]
    untested = [m for m in names if math.isnan(noise[m].sd)]
    pts = [cp.point(names, res) for cp in front]
    if QUALITY in [o for o, _ in objectives] and len(pts) > 1 and not all(p.items for p in pts):
        untested.append(QUALITY)  # a trial from before per-item scores: quality cannot be paired
    diffs = compare_points(pts, objectives, noise, ALPHA) if len(pts) > 1 else []
    if untested:  # no statement of equivalence without a noise estimate
        return Judgement(noise, dict.fromkeys((cp.key for cp in front), "?"), untested, diffs)
    first, direction = objectives[0]
    order = sorted(pts, key=lambda p: _value(p, first, noise) * (1 if direction == "minimize" else -1))
    classes = equivalence_classes(pts, diffs, [p.key for p in order])
    return Judgement(noise, class_labels(classes), [], diffs)


def _value(p: Point, metric: str, noise: dict[str, Noise]) -> float:
    if metric == QUALITY:
        return float(np.mean(list(p.items.values()))) if p.items else math.nan
    return estimate(p, metric, noise[metric]).mean


def intervals(cp: ConfigPoint, space: SpaceConfig, noise: dict[str, Noise], res: dict[str, float],
              fresh: bool = False) -> dict[str, Any]:
    """`<metric>_low`/`_high` per window objective and shown metric (NaN when the noise is unknown); `fresh`:
    where one more window on a fresh engine falls (a prediction interval), not where the config's mean is."""
    names = [m for m in shown_metrics(space) if m in noise]
    p = cp.point(names, res)
    out: dict[str, Any] = {}
    widen = cp.bracket()  # capacity lies in [low, low x bracket): its interval spans the bracket too
    for m in names:
        try:
            e = estimate(p, m, noise[m], fresh=fresh)
        except ValueError:  # capacity 0 (nothing passed) on a log scale: a censored value, no interval
            out[m], out[f"{m}_low"], out[f"{m}_high"] = math.nan, math.nan, math.nan
            continue
        low, high = e.low, e.high
        if widen > 1 and m == "capacity_tps":
            high = high * widen
        elif widen > 1 and m == "usd_per_1k_tasks":
            low = low / widen
        out[m], out[f"{m}_low"], out[f"{m}_high"] = e.mean, low, high
    return out
