"""The knob-spec -> Optuna distribution mapping every sampler shares (the pymoo adapter encodes the same ones)."""

from __future__ import annotations

import optuna

from autotune.config import KNOBS, SpaceConfig


def distributions(space: SpaceConfig) -> dict[str, optuna.distributions.BaseDistribution]:
    """Every sampled knob as the Optuna distribution `suggest` uses for it (fixed `value` knobs excluded)."""
    out: dict[str, optuna.distributions.BaseDistribution] = {}
    for name, spec in space.knobs.items():
        if spec.value is not None:
            continue
        if spec.choices is not None:
            out[name] = optuna.distributions.CategoricalDistribution(spec.choices)
        elif KNOBS[name].type is int:
            out[name] = optuna.distributions.IntDistribution(int(spec.low), int(spec.high), log=spec.log,
                                                             step=int(spec.step or 1))
        else:
            out[name] = optuna.distributions.FloatDistribution(spec.low, spec.high, log=spec.log, step=spec.step)
    return out
