"""Engines run as processes: launch, readiness, reuse and parking, teardown by process group; the tuner never imports
them."""

from autotune.engines.keeper import EngineKeeper
from autotune.engines.process import EngineRegistry, flush_log, group_alive, start_group, terminate_group
from autotune.engines.prometheus import gauges, histogram_delta, parse_metrics, window_deltas
from autotune.engines.vllm import (
    VLLMEngine,
    build_argv,
    classify_failure,
    engine_fatal,
    knob_env,
    reset_prefix_cache,
)

__all__ = [
    "EngineKeeper", "EngineRegistry", "VLLMEngine", "build_argv", "classify_failure", "engine_fatal", "flush_log",
    "gauges", "group_alive", "histogram_delta", "knob_env", "parse_metrics", "reset_prefix_cache", "start_group",
    "terminate_group", "window_deltas",
]
