"""Which measured config to recommend: the candidates (one per feasible config) and the pick policies.

The default, `cheapest-within-quality`, is quality-aware: among the configs whose paired quality is not
distinguishably worse than the best candidate's (a paired test on the shared evaluation items, each at
`ALPHA`), or at least a floor the user states, it takes the cheapest. Its reason names the test that decided.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import optuna

from autotune.config import KNOWN_METRICS, SpaceConfig, load_space
from autotune.pareto import front_indices

POLICIES = ("cheapest-within-quality", "fastest-within-quality", "cheapest-within-sla", "best-quality-within-sla",
            "knee")
DEFAULT_POLICY = "cheapest-within-quality"
ALPHA = 0.05  # each "distinguishably worse" test, uncorrected: stricter on a config than a family correction
EXPR = re.compile(r"^\s*(min|max)\s+(\w+)(?:\s+where\s+(.+?))?\s*$", re.I)
COND = re.compile(r"^\s*(\w+)\s*(<=|>=|<|>|==)\s*(-?[\d.]+(?:e-?\d+)?)\s*$", re.I)


@dataclass
class Candidate:
    number: int
    params: dict[str, Any]
    metrics: dict[str, float]
    values: list[float]
    user_attrs: dict[str, Any]
    items: dict[str, float] = field(default_factory=dict)  # evaluation item id -> score (the paired tests)


def candidates(study: optuna.Study, space: SpaceConfig | None = None) -> list[Candidate]:
    """What a policy may recommend: one candidate per measured, feasible config at full fidelity (a screened-out
    trial or a re-proposal never). Each carries its config's merged estimate (the confirmation windows once
    confirmed) under its first trial's number."""
    from autotune.objectives import evaluate
    from autotune.search import study_points

    if space is None:
        if "space_file" not in study.user_attrs:  # a study from before recorded spaces: its trials as they are
            return [Candidate(t.number, t.params, t.user_attrs.get("metrics", {}), list(t.values), t.user_attrs,
                              dict(t.user_attrs.get("item_scores") or {}))
                    for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE
                    and t.user_attrs.get("feasible", True) and t.user_attrs.get("fidelity", "full") == "full"]
        space = load_space(study.user_attrs["space_file"], check_paths=False)
    out = []
    for cp in study_points(study, space):
        metrics = cp.metrics()
        ev = evaluate(metrics, space.objectives, space.constraints)
        if ev.feasible and not cp.confirm_failed:  # a config that could not be re-measured is not recommended
            first = cp.trials[0]
            out.append(Candidate(cp.number, first.params, metrics, ev.values,
                                 {**first.user_attrs, "config_key": cp.key, "trials": [t.number for t in cp.trials]},
                                 cp.items()))
    return out


def parse_expression(expr: str) -> tuple[str, str, list[tuple[str, str, float]]]:
    """'min p95_task_ms where quality >= 0.6 and task_error_rate <= 0.01' -> (min, metric, conditions)."""
    m = EXPR.match(expr)
    if not m:
        raise ValueError("a policy expression reads `min|max METRIC [where METRIC OP NUMBER [and ...]]`")
    goal, metric, where = m.group(1).lower(), m.group(2), m.group(3)
    conds = []
    for part in re.split(r"\s+and\s+", where or "", flags=re.I) if where else []:
        c = COND.match(part)
        if not c:
            raise ValueError(f"cannot read condition {part!r}; use METRIC OP NUMBER with OP one of <= >= < > ==")
        conds.append((c.group(1), c.group(2), float(c.group(3))))
    for name in [metric, *[c[0] for c in conds]]:
        if name not in KNOWN_METRICS:
            raise ValueError(f"unknown metric {name!r}; known: {sorted(KNOWN_METRICS)}")
    return goal, metric, conds


def _holds(x: float | None, op: str, v: float) -> bool:
    if x is None or math.isnan(x):
        return False
    return {"<=": x <= v, ">=": x >= v, "<": x < v, ">": x > v, "==": x == v}[op]


def _quality(c: Candidate) -> float:
    q = c.metrics.get("quality", math.nan)
    return q if q == q else -math.inf


def within_quality(cands: list[Candidate], min_quality: float | None = None) -> tuple[list[Candidate], str]:
    """(the candidates a user would accept on quality, how that was decided). With `min_quality`: those at or
    above it. Else those whose paired quality is not distinguishably worse than the best candidate's: excluded is
    a config whose mean paired difference is negative with p < ALPHA (McNemar exact for 0/1 scores, else
    Wilcoxon signed-rank; autotune.measure.compare.paired_quality). A config without item scores cannot be
    compared, and only stays when it is the best."""
    from autotune.measure import paired_quality

    if min_quality is not None:
        return [c for c in cands if _quality(c) >= min_quality], f"quality >= {min_quality:g} (the stated floor)"
    best = max(cands, key=_quality)
    ok, worse = [], 0
    for c in cands:
        if c is best:
            ok.append(c)
            continue
        d = paired_quality(best.items, c.items) if best.items and c.items else None
        if d is not None and d.n and not (d.delta < 0 and d.p < ALPHA):
            ok.append(c)
        else:
            worse += 1
    return ok, (f"paired quality not distinguishably worse than trial {best.number}'s ({_quality(best):.3f}, the "
                f"best): {worse} of {len(cands)} configs excluded at p < {ALPHA:g} each")


def pick(cands: list[Candidate], space: SpaceConfig, policy: str, min_quality: float | None = None,
         min_sla: float = 0.95) -> tuple[Candidate, str]:
    """(chosen trial, the rule it was chosen by, in words). Raises ValueError when nothing qualifies."""
    if not cands:
        raise ValueError("the study has no complete, feasible trial")
    if policy in ("cheapest-within-quality", "fastest-within-quality"):
        return _within_quality(cands, policy, min_quality, min_sla)
    sla = f"task_sla_attainment >= {min_sla:g}"
    expr = {"cheapest-within-sla": f"min usd_per_1k_tasks where {sla}",
            "best-quality-within-sla": f"max quality where {sla}"}.get(policy)
    if policy == "knee":
        return _knee(cands, space), "knee: the front member closest to the ideal point (pymoo ASF, equal weights)"
    goal, metric, conds = parse_expression(expr or policy)
    ok = [c for c in cands if all(_holds(c.metrics.get(m), op, v) for m, op, v in conds)
          and not math.isnan(c.metrics.get(metric, math.nan))]
    if not ok:
        raise ValueError(f"no trial satisfies `{expr or policy}`")
    chosen = (min if goal == "min" else max)(ok, key=lambda c: c.metrics[metric])
    return chosen, expr or policy


def _within_quality(cands: list[Candidate], policy: str, min_quality: float | None,
                    min_sla: float) -> tuple[Candidate, str]:
    """The cheapest (cost at capacity, or at the fixed load when it held the SLA) or the fastest (p95 task latency
    at the operating load) of the configs `within_quality` accepts; ties go to the better quality."""
    ok, how = within_quality(cands, min_quality)
    cheapest = policy.startswith("cheapest")
    metric = "usd_per_1k_tasks" if cheapest else next(
        (m for m in ("p95_task_ms_at_load", "p95_task_ms") if any(m in c.metrics for c in cands)), "p95_task_ms")
    fixed_load = [c for c in ok if "capacity_tps" not in c.metrics]  # its cost is real only where it held the SLA
    ok = [c for c in ok if c not in fixed_load or _holds(c.metrics.get("task_sla_attainment"), ">=", min_sla)]
    ok = [c for c in ok if math.isfinite(c.metrics.get(metric, math.nan))]
    if not ok:
        raise ValueError(f"no config is within quality ({how}) with a finite {metric}")
    chosen = min(ok, key=lambda c: (c.metrics[metric], -_quality(c)))
    return chosen, f"min {metric} among {len(ok)} configs with {how}" + _versus_best(chosen, cands, min_quality)


def _versus_best(chosen: Candidate, cands: list[Candidate], min_quality: float | None) -> str:
    """The chosen config's own paired test against the best, in words ('' when it is the best or untested)."""
    from autotune.measure import paired_quality

    best = max(cands, key=_quality)
    if chosen is best or min_quality is not None or not (best.items and chosen.items):
        return "; the pick is the best on quality" if chosen is best else ""
    d = paired_quality(best.items, chosen.items)
    return (f"; trial {chosen.number} vs trial {best.number}: paired quality difference {d.delta:+.3f} "
            f"[{d.low:+.3f}, {d.high:+.3f}] (95 % bootstrap over {d.n} items), {d.test} p = {d.p:.2g}")


def _knee(cands: list[Candidate], space: SpaceConfig) -> Candidate:
    from pymoo.decomposition.asf import ASF

    directions = [o.direction for o in space.objectives]
    front = [cands[i] for i in front_indices([c.values for c in cands], directions)]
    F = np.array([[v if d == "minimize" else -v for v, d in zip(c.values, directions, strict=True)] for c in front])
    span = np.where(F.max(0) - F.min(0) > 0, F.max(0) - F.min(0), 1.0)
    norm = (F - F.min(0)) / span
    scores = ASF().do(norm, np.full(F.shape[1], 1.0 / F.shape[1]))
    return front[int(np.argmin(scores))]
