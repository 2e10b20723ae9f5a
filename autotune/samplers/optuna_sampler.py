"""Optuna samplers and the knob-spec -> distribution mapping (conditional knobs included)."""

from __future__ import annotations

import importlib
import math
import warnings
from typing import Any

import optuna

from autotune.config import SAMPLERS, SpaceConfig, population, random_start
from autotune.samplers.distributions import distributions


class AskTellGridSampler(optuna.samplers.GridSampler):
    """GridSampler calls study.stop() once the grid is covered, which is only legal inside optimize(); with
    ask/tell that raises before the trial is stored. The search loop caps n_trials at the grid size instead."""

    def after_trial(self, study, trial, state, values) -> None:
        return None


def grid_space(space: SpaceConfig) -> dict[str, list[Any]]:
    """Every `choices` knob as a grid axis; ranges cannot be enumerated (give them `choices` for a grid)."""
    ranges = [name for name, spec in space.knobs.items() if spec.low is not None]
    if ranges:
        raise ValueError(f"the grid sampler needs `choices` or `value` for every knob; ranges: {ranges}")
    return {name: list(spec.choices) for name, spec in space.knobs.items() if spec.choices is not None}


def grid_size(space: SpaceConfig) -> int:
    return math.prod(len(v) for v in grid_space(space).values())


def make_sampler(name: str, seed: int, n_trials: int, space: SpaceConfig) -> optuna.samplers.BaseSampler:
    """One seeded sampler by its registry name (autotune/config/samplers.py)."""
    entry = SAMPLERS.get(name)
    if entry is None:
        raise ValueError(f"unknown sampler {name!r}; known: {list(SAMPLERS)}")
    module, _, function = entry.factory.partition(":")
    factory = getattr(importlib.import_module(module), function)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return factory(seed, n_trials, space)


# factories named by the registry: (seed, n_trials, space) -> sampler. Few trials are affordable, so population
# samplers get small populations and model-based ones leave their random start early.

def tpe(seed: int, n_trials: int, space: SpaceConfig) -> optuna.samplers.BaseSampler:
    # model knobs jointly (conditional groups); a batch's running trials are not proposed again (constant liar)
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=random_start(n_trials), multivariate=True,
                                      group=True, constant_liar=True)


def nsga2(seed: int, n_trials: int, space: SpaceConfig) -> optuna.samplers.BaseSampler:
    return optuna.samplers.NSGAIISampler(seed=seed, population_size=population(n_trials))


def nsga3(seed: int, n_trials: int, space: SpaceConfig) -> optuna.samplers.BaseSampler:
    return optuna.samplers.NSGAIIISampler(seed=seed, population_size=population(n_trials))


def gp(seed: int, n_trials: int, space: SpaceConfig) -> optuna.samplers.BaseSampler:
    # Gaussian process (needs torch, which the tuner env has for the semantic cache)
    return optuna.samplers.GPSampler(seed=seed, n_startup_trials=random_start(n_trials),
                                     warn_independent_sampling=False)


def random(seed: int, n_trials: int, space: SpaceConfig) -> optuna.samplers.BaseSampler:
    return optuna.samplers.RandomSampler(seed=seed)


def grid(seed: int, n_trials: int, space: SpaceConfig) -> optuna.samplers.BaseSampler:
    # brute force: every combination of the `choices` knobs, in a seeded order
    return AskTellGridSampler(grid_space(space), seed=seed)


MAX_BATCH = 64  # trials asked at once (running trials hold their engine's place in the order)


def ask_size(sampler: optuna.samplers.BaseSampler, study: optuna.Study, batch: int, n_trials: int) -> int:
    """How many trials to ask at once (before the caps of the search loop). A sampler's independent draws (a random
    start, a grid, random) are asked together: they do not depend on any result, so asked together and run in any
    order they are exactly the trials it would have proposed one by one, and the search can group them by server
    part (one launch per part) without biasing what is measured. A genetic sampler gets exactly the free places of
    its current generation (more would be random fill-ins or overfill the generation). Model-guided samplers get
    `batch`; `batch` 1 means one trial at a time, always. `n_trials`: the budget the sampler was made for."""
    from autotune.samplers.pymoo_sampler import PymooSampler

    if batch == 1:
        return 1
    states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    if isinstance(sampler, optuna.samplers.RandomSampler | optuna.samplers.GridSampler):
        return 10**6
    if isinstance(sampler, optuna.samplers.TPESampler | optuna.samplers.GPSampler):
        return max(batch, random_start(n_trials) - len(study.get_trials(deepcopy=False, states=states)))
    if isinstance(sampler, PymooSampler):
        return max(1, sampler.free_slots(study))
    if isinstance(sampler, optuna.samplers.BaseGASampler):
        # Optuna's rule: a new trial joins the newest generation until `population_size` of it are COMPLETE.
        # The generation of a RUNNING trial has no public reader: `get_trial_generation` assigns one to a trial
        # that has none (a side effect on trials this function only counts) and `get_population` lists COMPLETE
        # trials only; so the key is read as Optuna itself stores it (a private name, pinned by optuna<6).
        key, pop = sampler._get_generation_key(), sampler.population_size or 1
        trials = study.get_trials(deepcopy=False)
        gens = [g for t in trials if (g := t.system_attrs.get(key)) is not None]
        if not gens:
            return pop
        newest = max(gens)
        done = sum(1 for t in trials
                   if t.system_attrs.get(key) == newest and t.state == optuna.trial.TrialState.COMPLETE)
        if done >= pop:
            return pop
        taken = sum(1 for t in trials if t.system_attrs.get(key) == newest and t.state in (
            optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.RUNNING))
        return max(1, pop - taken)
    return batch


def set_constraints(trial: optuna.Trial, names: list[str], violations: list[float]) -> None:
    """Feasible-first: samplers read these (<= 0 is satisfied); set before tell()."""
    for name, value in zip(names, violations, strict=True):
        trial.set_constraint(name, value)


def _active(when: dict[str, list[Any]] | None, values: dict[str, Any]) -> bool:
    return all(values.get(dep) in allowed for dep, allowed in (when or {}).items())


def suggest(trial: optuna.Trial, space: SpaceConfig) -> dict[str, Any]:
    """Sample every active knob in file order; fixed `value` knobs are returned without sampling. The
    distributions are `distributions(space)`, the same ones the pymoo sampler encodes."""
    dists = distributions(space)
    values: dict[str, Any] = {}
    for name, spec in space.knobs.items():
        if not _active(spec.when, values):
            continue  # conditional knob whose condition is false: not a parameter of this trial
        if spec.value is not None:
            values[name] = spec.value
            continue
        d = dists[name]
        if isinstance(d, optuna.distributions.CategoricalDistribution):
            values[name] = trial.suggest_categorical(name, d.choices)
        elif isinstance(d, optuna.distributions.IntDistribution):
            values[name] = trial.suggest_int(name, d.low, d.high, step=d.step, log=d.log)
        else:
            values[name] = trial.suggest_float(name, d.low, d.high, step=d.step, log=d.log)
    return values
