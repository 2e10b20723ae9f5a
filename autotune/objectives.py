"""Trial metrics -> objective vector and constraint violations (Optuna convention: <= 0 is feasible). Pure."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from autotune.config import Constraint, Objective, SpaceConfig

# A NaN/inf metric cannot satisfy a constraint; Optuna wants finite numbers.
UNMEASURABLE = 1e12


@dataclass(frozen=True)
class Evaluation:
    values: list[float]
    violations: list[float]

    @property
    def feasible(self) -> bool:
        return all(v <= 0 for v in self.violations)


def violation(metrics: dict[str, float], c: Constraint) -> float:
    """How far the metric is on the wrong side of the bound (<= 0 means satisfied)."""
    x = metrics.get(c.metric, math.nan)
    if x is None or math.isnan(x) or math.isinf(x):
        return UNMEASURABLE
    return x - c.value if c.op == "<=" else c.value - x


def objective_value(metrics: dict[str, float], o: Objective) -> float:
    """The objective as reported to the sampler; an unmeasurable value is the worst finite value."""
    x = metrics.get(o.metric, math.nan)
    if x is None or math.isnan(x) or math.isinf(x):
        return UNMEASURABLE if o.direction == "minimize" else -UNMEASURABLE
    return float(x)


def evaluate(metrics: dict[str, float], objectives: list[Objective], constraints: list[Constraint]) -> Evaluation:
    """Objective values and constraint violations; a capacity trial carries one more, implicit constraint:
    a config that holds the SLA at no load level (capacity 0) is infeasible, whatever the space says."""
    violations = [violation(metrics, c) for c in constraints]
    if "capacity_tps" in metrics:
        cap = metrics["capacity_tps"]
        violations.append(-cap if cap == cap and cap > 0 else UNMEASURABLE)
    return Evaluation(values=[objective_value(metrics, o) for o in objectives], violations=violations)


def constraint_names(constraints: list[Constraint], metrics: dict[str, float]) -> list[str]:
    return [f"{c.metric}{c.op}{c.value:g}" for c in constraints] + (["capacity_tps>0"] if "capacity_tps" in metrics
                                                                      else [])


def knob_metrics(values: dict[str, Any], space: SpaceConfig) -> dict[str, float]:
    """Every sampled knob as a number (`knob.<name>`: the value, 0/1, or the index in `choices`), because the
    MLflow UI's parallel-coordinates and scatter views plot metrics and numeric params, not string params."""
    out = {}
    for name, v in values.items():
        spec = space.knobs[name]
        if spec.value is not None:
            continue
        if spec.choices is not None and not all(isinstance(c, int | float) and not isinstance(c, bool)
                                                 for c in spec.choices):
            out[f"knob.{name}"] = float(spec.choices.index(v))
        else:
            out[f"knob.{name}"] = float(v)
    return out
