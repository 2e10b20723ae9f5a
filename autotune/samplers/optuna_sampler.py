"""Optuna samplers and the knob-spec -> distribution mapping (conditional knobs included)."""

from __future__ import annotations

import math
import warnings
from typing import Any

import optuna

from autotune.config.space import SpaceConfig
from autotune.knobs import KNOBS

SAMPLERS = ("tpe", "nsga2", "random", "grid")


def grid_space(space: SpaceConfig) -> dict[str, list[Any]]:
    """Every `choices` knob as a grid axis; ranges cannot be enumerated (give them `choices` for a grid)."""
    ranges = [name for name, spec in space.knobs.items() if spec.low is not None]
    if ranges:
        raise ValueError(f"the grid sampler needs `choices` or `value` for every knob; ranges: {ranges}")
    return {name: list(spec.choices) for name, spec in space.knobs.items() if spec.choices is not None}


class AskTellGridSampler(optuna.samplers.GridSampler):
    """GridSampler calls study.stop() once the grid is covered, which is only legal inside optimize(); with
    ask/tell that raises before the trial is stored. The search loop caps n_trials at the grid size instead."""

    def after_trial(self, study, trial, state, values) -> None:
        return None


def grid_size(space: SpaceConfig) -> int:
    return math.prod(len(v) for v in grid_space(space).values())


def make_sampler(name: str, seed: int, n_trials: int, space: SpaceConfig | None = None) -> optuna.samplers.BaseSampler:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        if name == "tpe":
            # few trials are affordable: leave the random start early, model knobs jointly (conditional groups)
            return optuna.samplers.TPESampler(
                seed=seed, n_startup_trials=max(2, min(4, n_trials // 2)), multivariate=True, group=True,
            )
        if name == "nsga2":
            return optuna.samplers.NSGAIISampler(seed=seed, population_size=max(4, min(20, n_trials // 2)))
        if name == "random":
            return optuna.samplers.RandomSampler(seed=seed)
        if name == "grid":  # brute force: every combination of the `choices` knobs, in a seeded order
            return AskTellGridSampler(grid_space(space), seed=seed) if space else None
    raise ValueError(f"unknown sampler {name!r}; known: {list(SAMPLERS)}")


def set_constraints(trial: optuna.Trial, names: list[str], violations: list[float]) -> None:
    """Feasible-first: samplers read these (<= 0 is satisfied); set before tell()."""
    for name, value in zip(names, violations, strict=True):
        trial.set_constraint(name, value)


def _active(when: dict[str, list[Any]] | None, values: dict[str, Any]) -> bool:
    return all(values.get(dep) in allowed for dep, allowed in (when or {}).items())


def suggest(trial: optuna.Trial, space: SpaceConfig) -> dict[str, Any]:
    """Sample every active knob in file order; fixed `value` knobs are returned without sampling."""
    values: dict[str, Any] = {}
    for name, spec in space.knobs.items():
        if not _active(spec.when, values):
            continue  # conditional knob whose condition is false: not a parameter of this trial
        if spec.value is not None:
            values[name] = spec.value
        elif spec.choices is not None:
            values[name] = trial.suggest_categorical(name, spec.choices)
        elif KNOBS[name].type is int:
            step = int(spec.step or 1)
            values[name] = trial.suggest_int(name, int(spec.low), int(spec.high), step=step, log=spec.log)
        else:
            values[name] = trial.suggest_float(name, spec.low, spec.high, step=spec.step, log=spec.log)
    return values
