"""The sampler registry: every sampler a space or `--sampler` may name, what it is, and where its factory lives.

The `search.sampler` Literal, the CLI help, the README's list and `make_sampler` all derive from SAMPLERS. A
factory is named by `module:function` (as entry points are), so this module imports no sampler code and the
config room stays below the samplers room. A factory takes (seed, n_trials, space) and returns an Optuna
`BaseSampler`. Adding a sampler: a factory function and one entry here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class SamplerEntry:
    factory: str  # "module:function"
    summary: str


OPTUNA = "autotune.samplers.optuna_sampler"
PYMOO = "autotune.samplers.pymoo_sampler"
SAMPLERS: dict[str, SamplerEntry] = {
    "tpe": SamplerEntry(f"{OPTUNA}:tpe", "Optuna TPE, multivariate over conditional groups (the default)"),
    "nsga2": SamplerEntry(f"{OPTUNA}:nsga2", "Optuna NSGA-II (genetic)"),
    "nsga3": SamplerEntry(f"{OPTUNA}:nsga3", "Optuna NSGA-III (genetic, reference directions)"),
    "gp": SamplerEntry(f"{OPTUNA}:gp", "Optuna Gaussian-process Bayesian optimisation"),
    "random": SamplerEntry(f"{OPTUNA}:random", "uniform random"),
    "grid": SamplerEntry(f"{OPTUNA}:grid", "every combination of the `choices` knobs, in a seeded order"),
    "pymoo-nsga2": SamplerEntry(f"{PYMOO}:nsga2", "pymoo NSGA-II through ask/tell"),
    "pymoo-nsga3": SamplerEntry(f"{PYMOO}:nsga3", "pymoo NSGA-III through ask/tell"),
    "pymoo-moead": SamplerEntry(f"{PYMOO}:moead", "pymoo MOEA/D through ask/tell"),
}
SamplerName = Literal[tuple(SAMPLERS)]  # type: ignore[valid-type]  (the space's `search.sampler`)


def sampler_help() -> str:
    return " | ".join(SAMPLERS)


def random_start(n_trials: int) -> int:
    """Trials a model-guided sampler draws at random before its model proposes: few trials are affordable."""
    return max(2, min(4, n_trials // 2))


def population(n_trials: int) -> int:
    """A genetic sampler's population: small, since every member is a real trial."""
    return max(4, min(20, n_trials // 3))
