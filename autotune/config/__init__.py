"""Strict configuration models (extra='forbid') and their YAML loaders."""

from autotune.config.loader import load_yaml, parse_model
from autotune.config.space import SpaceConfig, load_space
from autotune.config.workload import WorkloadConfig, load_workload

__all__ = ["SpaceConfig", "WorkloadConfig", "load_space", "load_workload", "load_yaml", "parse_model"]
