"""Objective vectors and constraint violations (Optuna convention: <= 0 is feasible)."""

from __future__ import annotations

import math

from autotune.config.space import Constraint, Objective
from autotune.objectives import UNMEASURABLE, evaluate
from autotune.pareto import front_indices, hypervolume

OBJ = [Objective(metric="p95_e2e_ms", direction="minimize"), Objective(metric="quality", direction="maximize")]
CON = [Constraint(metric="p95_ttft_ms", op="<=", value=500), Constraint(metric="quality", op=">=", value=0.5)]


def test_feasible_trial():
    ev = evaluate({"p95_e2e_ms": 900.0, "quality": 0.8, "p95_ttft_ms": 400.0}, OBJ, CON)
    assert ev.values == [900.0, 0.8]
    assert ev.violations == [-100.0, -0.30000000000000004] and ev.feasible


def test_violations_measure_the_distance():
    ev = evaluate({"p95_e2e_ms": 900.0, "quality": 0.2, "p95_ttft_ms": 650.0}, OBJ, CON)
    assert ev.violations[0] == 150.0 and math.isclose(ev.violations[1], 0.3) and not ev.feasible


def test_unmeasurable_metrics_are_worst_and_infeasible():
    ev = evaluate({"p95_e2e_ms": math.nan, "quality": math.nan}, OBJ, CON)
    assert ev.values == [UNMEASURABLE, -UNMEASURABLE]
    assert ev.violations == [UNMEASURABLE, UNMEASURABLE] and not ev.feasible


def test_front_mixed_directions_and_hypervolume():
    # (latency min, quality max): B dominates C; A and B trade off
    pts = [[100, 0.5], [200, 0.9], [300, 0.8]]
    assert front_indices(pts, ["minimize", "maximize"]) == [0, 1]
    # reference (400, 0): union of [100,400]x[0,0.5] and [200,400]x[0,0.9] = 150 + 180 - 100 ... computed:
    # A box: 300*0.5 = 150; B box: 200*0.9 = 180; overlap 200*0.5 = 100 -> 230
    assert math.isclose(hypervolume(pts, ["minimize", "maximize"], [400, 0]), 230.0)
