"""pymoo's NSGA-II, NSGA-III and MOEA/D, driven ask/tell behind Optuna's sampler interface.

Each knob is one real variable in [0, 1] (choices are equal bins; ranges scale, log ranges in log space). pymoo
asks a population; every Optuna trial takes the next free individual (recorded in the trial's system attrs as
generation/index). When a generation's trials have all finished, their objectives and constraint violations
are told to pymoo, which breeds the next one. The algorithm's state is rebuilt from the study on every call by
replaying ask/tell with the same seed (deterministic), so a resumed study or another worker continues it; a
worker that finds every individual of the current generation taken samples randomly meanwhile.

Failed trials are told as infeasible with the worst objectives seen, so pymoo breeds away from them.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, IntDistribution
from optuna.trial import FrozenTrial, TrialState

from autotune.config import population
from autotune.samplers.distributions import distributions

GEN, IDX = "pymoo:generation", "pymoo:index"
ALGORITHMS = ("nsga2", "nsga3", "moead")
PENALTY = 1e6


def encode(dist: BaseDistribution, value: Any) -> float:
    if isinstance(dist, CategoricalDistribution):
        return (dist.choices.index(value) + 0.5) / len(dist.choices)
    lo, hi, v = float(dist.low), float(dist.high), float(value)
    if hi == lo:
        return 0.5
    if dist.log:
        return (math.log(v) - math.log(lo)) / (math.log(hi) - math.log(lo))
    return (v - lo) / (hi - lo)


def decode(dist: BaseDistribution, x: float) -> Any:
    x = min(max(float(x), 0.0), 1.0)
    if isinstance(dist, CategoricalDistribution):
        return dist.choices[min(int(x * len(dist.choices)), len(dist.choices) - 1)]
    lo, hi = float(dist.low), float(dist.high)
    v = math.exp(math.log(lo) + x * (math.log(hi) - math.log(lo))) if dist.log else lo + x * (hi - lo)
    step = getattr(dist, "step", None)
    if step:
        v = lo + round((v - lo) / step) * step
    v = min(max(v, lo), hi)
    return int(round(v)) if isinstance(dist, IntDistribution) else float(v)


class PymooSampler(optuna.samplers.BaseSampler):
    def __init__(self, algorithm: str, space: dict[str, BaseDistribution], n_objectives: int, n_constraints: int,
                 seed: int = 0, pop_size: int = 6):
        if algorithm not in ALGORITHMS:
            raise ValueError(f"unknown pymoo algorithm {algorithm!r}; known: {list(ALGORITHMS)}")
        if algorithm in ("nsga3", "moead") and n_objectives < 2:
            raise ValueError(f"pymoo {algorithm} needs at least 2 objectives, the space has {n_objectives}")
        self.algorithm, self.space, self.seed, self.pop_size = algorithm, dict(space), seed, pop_size
        self.n_obj, self.n_constr = n_objectives, n_constraints
        self._random = optuna.samplers.RandomSampler(seed=seed)

    # --- Optuna sampler interface --------------------------------------------------------------------------------

    def infer_relative_search_space(self, study, trial) -> dict[str, BaseDistribution]:
        return dict(self.space)

    def sample_relative(self, study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]) -> dict:
        if not search_space or "fixed_params" in trial.system_attrs:
            return {}  # enqueued configs (warm start, reruns) are measured as given
        slot = self._next_slot(study)
        if slot is None:
            return {}  # every individual of this generation is taken (other workers): random meanwhile
        gen, idx, x, _ = slot
        study._storage.set_trial_system_attr(trial._trial_id, GEN, gen)
        study._storage.set_trial_system_attr(trial._trial_id, IDX, idx)
        return {name: decode(dist, x[i]) for i, (name, dist) in enumerate(self.space.items())
                if name in search_space}

    def sample_independent(self, study, trial, param_name, param_distribution):
        return self._random.sample_independent(study, trial, param_name, param_distribution)

    def free_slots(self, study) -> int:
        """Individuals of the current generation no trial has taken: how many can be asked at once without
        random fill-ins (MOEA/D offers one at a time)."""
        slot = self._next_slot(study)
        return slot[3] if slot is not None else 0

    # --- ask/tell replay -------------------------------------------------------------------------------------------

    def _problem(self):
        from pymoo.core.problem import Problem

        # one extra constraint column: "the trial failed"; MOEA/D takes no constraints (penalised objectives)
        n_ieq = 0 if self.algorithm == "moead" else self.n_constr + 1
        return Problem(n_var=len(self.space), n_obj=self.n_obj, n_ieq_constr=n_ieq, xl=0.0, xu=1.0)

    def _fresh(self, problem):
        from pymoo.algorithms.moo.moead import MOEAD
        from pymoo.algorithms.moo.nsga2 import NSGA2
        from pymoo.algorithms.moo.nsga3 import NSGA3
        from pymoo.util.ref_dirs import get_reference_directions

        if self.algorithm == "nsga2":
            algo = NSGA2(pop_size=self.pop_size)
        else:
            parts = 1
            while len(get_reference_directions("das-dennis", self.n_obj, n_partitions=parts + 1)) <= self.pop_size:
                parts += 1
            ref = get_reference_directions("das-dennis", self.n_obj, n_partitions=parts)
            algo = NSGA3(ref_dirs=ref, pop_size=max(self.pop_size, len(ref))) if self.algorithm == "nsga3" else \
                MOEAD(ref_dirs=ref, n_neighbors=min(3, len(ref)))
        algo.setup(problem, termination=("n_gen", 10**9), seed=self.seed, verbose=False)
        return algo

    def _next_slot(self, study) -> tuple[int, int, np.ndarray, int] | None:
        # pymoo 0.6 helpers called without a random_state draw one from OS entropy (default_rng(None)), e.g.
        # NSGA-III niching: during the replay, seed those from a counter so a replay is deterministic; restore after
        real_default_rng = np.random.default_rng
        counter = iter(range(self.seed * 1_000_003, 2**62))

        def seeded_default_rng(seed=None, *args, **kwargs):
            return real_default_rng(next(counter) if seed is None else seed, *args, **kwargs)

        np.random.default_rng = seeded_default_rng
        try:
            return self._replay(study)
        finally:
            np.random.default_rng = real_default_rng

    def _replay(self, study) -> tuple[int, int, np.ndarray, int] | None:
        from pymoo.core.evaluator import Evaluator
        from pymoo.core.population import Population
        from pymoo.problems.static import StaticProblem

        trials = study.get_trials(deepcopy=False)
        slots = {(t.system_attrs[GEN], t.system_attrs[IDX]): t for t in trials if GEN in t.system_attrs}
        reruns = {t.user_attrs["rerun_of"]: t for t in trials if "rerun_of" in t.user_attrs}
        problem = self._problem()
        algo = self._fresh(problem)
        gen = 0
        while True:
            asked = algo.ask()  # MOEA/D asks one Individual at a time, the others a Population
            pop = asked if isinstance(asked, Population) else Population.create(asked)
            X = np.atleast_2d(pop.get("X"))
            taken = [slots.get((gen, i)) for i in range(len(X))]
            free = [i for i, t in enumerate(taken) if t is None]
            if free:
                return gen, free[0], X[free[0]], len(free)
            finished = [self._outcome(t, reruns) for t in taken]
            if any(o is None for o in finished):
                return None
            F, G = self._matrices(study, finished)
            pop.set("X", np.array([self._encoded(t, X[i]) for i, t in enumerate(finished)]))
            if self.algorithm == "moead":
                F = F + PENALTY * np.maximum(G, 0).sum(axis=1, keepdims=True)
                Evaluator().eval(StaticProblem(problem, F=F), pop)
            else:
                Evaluator().eval(StaticProblem(problem, F=F, G=G), pop)
            algo.tell(infills=asked)
            gen += 1

    def _outcome(self, t: FrozenTrial, reruns: dict[int, FrozenTrial]) -> FrozenTrial | None:
        """The finished trial standing for this individual (an interrupted one's rerun), or None if running."""
        if t.state == TrialState.FAIL and t.user_attrs.get("interrupted"):
            rerun = reruns.get(t.number)
            return rerun if rerun is not None and rerun.state.is_finished() else None
        return t if t.state.is_finished() else None

    def _matrices(self, study, trials: list[FrozenTrial]) -> tuple[np.ndarray, np.ndarray]:
        """Objectives (minimised) and constraint violations; a failed trial gets constant worst values (the
        replay must tell the same numbers whenever it runs) and a violated "failed" constraint."""
        signs = np.array([1.0 if d == optuna.study.StudyDirection.MINIMIZE else -1.0 for d in study.directions])
        F, G = [], []
        for t in trials:
            ok = t.state == TrialState.COMPLETE and t.values is not None
            F.append(np.array(t.values) * signs if ok else np.full(self.n_obj, PENALTY))
            raw = t.constraints or {}
            cons = list(raw.values() if isinstance(raw, dict) else raw) if ok else [PENALTY] * self.n_constr
            cons = (cons + [0.0] * self.n_constr)[:self.n_constr]
            G.append([*cons, -1.0 if ok else 1.0])
        return np.array(F, dtype=float), np.array(G, dtype=float)

    def _encoded(self, t: FrozenTrial, fallback: np.ndarray) -> np.ndarray:
        """The point actually measured (a rerun or a worker may differ from the replayed proposal)."""
        return np.array([encode(d, t.params[n]) if n in t.params else fallback[i]
                         for i, (n, d) in enumerate(self.space.items())])


# factories named by the sampler registry (autotune/config/samplers.py): (seed, n_trials, space) -> sampler

def _pymoo(algorithm: str, seed: int, n_trials: int, space) -> PymooSampler:
    return PymooSampler(algorithm, distributions(space), len(space.objectives), len(space.constraints), seed=seed,
                        pop_size=population(n_trials))


def nsga2(seed: int, n_trials: int, space) -> PymooSampler:
    return _pymoo("nsga2", seed, n_trials, space)


def nsga3(seed: int, n_trials: int, space) -> PymooSampler:
    return _pymoo("nsga3", seed, n_trials, space)


def moead(seed: int, n_trials: int, space) -> PymooSampler:
    return _pymoo("moead", seed, n_trials, space)
