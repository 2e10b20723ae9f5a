"""Non-dominated set and hypervolume, delegated to pymoo. Pure."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from pymoo.indicators.hv import HV
from pymoo.util.nds.non_dominated_sorting import NonDominatedSorting


def _as_minimization(values: Sequence[Sequence[float]], directions: Sequence[str]) -> np.ndarray:
    sign = np.array([1.0 if d == "minimize" else -1.0 for d in directions])
    return np.asarray(values, dtype=float).reshape(len(values), len(directions)) * sign


def front_indices(values: Sequence[Sequence[float]], directions: Sequence[str]) -> list[int]:
    """Indices of the non-dominated points (pass feasible points only: infeasible ones never enter)."""
    if len(values) == 0:
        return []
    f = _as_minimization(values, directions)
    idx = NonDominatedSorting().do(f, only_non_dominated_front=True)
    return sorted(int(i) for i in idx)


def hypervolume(values: Sequence[Sequence[float]], directions: Sequence[str], ref: Sequence[float]) -> float:
    """Hypervolume dominated by `values` w.r.t. the reference point `ref` (given in the original directions)."""
    if len(values) == 0:
        return 0.0
    f = _as_minimization(values, directions)
    r = _as_minimization([ref], directions)[0]
    return float(HV(ref_point=r)(f))
