"""Strict configuration models (extra='forbid'), their YAML loaders, and the registries configs name: knobs, samplers,
metrics, scorers."""

from autotune.config.dataset import read_items
from autotune.config.endpoints import EndpointConfig, OpenAIEndpointConfig
from autotune.config.knobs import KNOBS, ClientConfig, ServerConfig, TrialConfig, check_value, split_values
from autotune.config.loader import load_yaml, parse_model
from autotune.config.metric_names import PERCENTILES
from autotune.config.samplers import SAMPLERS, population, random_start, sampler_help
from autotune.config.scorers import Scorer, resolve_scorer, safe_score
from autotune.config.space import (
    KNOWN_METRICS,
    STUDY_NAME,
    Constraint,
    EngineConfig,
    Objective,
    SpaceConfig,
    load_space,
    workload_path,
)
from autotune.config.workload import WorkloadConfig, load_workload, templates

__all__ = [
    "ClientConfig", "Constraint", "EndpointConfig", "EngineConfig", "OpenAIEndpointConfig", "KNOBS", "KNOWN_METRICS",
    "Objective", "PERCENTILES", "SAMPLERS", "STUDY_NAME", "Scorer", "ServerConfig", "SpaceConfig", "TrialConfig",
    "WorkloadConfig", "check_value", "load_space", "load_workload", "load_yaml", "parse_model", "population",
    "random_start", "read_items", "resolve_scorer", "safe_score", "sampler_help", "split_values", "templates",
    "workload_path",
]
