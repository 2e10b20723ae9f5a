"""What to try next. Only this package imports the optimisation libraries."""

from autotune.samplers.optuna_sampler import MAX_BATCH, ask_size, grid_size, make_sampler, set_constraints, suggest

__all__ = [
    "MAX_BATCH", "ask_size", "grid_size", "make_sampler", "set_constraints", "suggest",
]
