"""Endpoints: vLLM run as processes (launch, readiness, reuse and parking, teardown by process group), or an
OpenAI-compatible API only called; `keeper_for` picks by the space's `engine.kind`."""

from autotune.engines.api import APIKeeper, api_cost
from autotune.engines.api import api_key as endpoint_key
from autotune.engines.keeper import EngineKeeper
from autotune.engines.plan import PlanKeeper
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
    "APIKeeper", "EngineKeeper", "EngineRegistry", "PlanKeeper", "VLLMEngine", "api_cost", "build_argv",
    "classify_failure", "endpoint_key", "engine_fatal", "flush_log", "gauges", "group_alive", "histogram_delta",
    "keeper_for", "knob_env", "parse_metrics", "reset_prefix_cache", "start_group", "terminate_group",
    "window_deltas",
]


def keeper_for(engine, registry: EngineRegistry, on_wait=None, endpoints: dict | None = None):
    """The keeper of the space's endpoint: a vLLM process launched, reused and parked, or an API only checked;
    with self-hosted `endpoints`, a PlanKeeper that also keeps theirs (launched on their first route)."""
    from autotune.config import ServerConfig

    main = APIKeeper(engine) if engine.kind == "openai" else \
        EngineKeeper(VLLMEngine(engine, registry, on_wait=on_wait), engine.park)
    extras = {name: (EngineKeeper(VLLMEngine(ep, registry, on_wait=on_wait)), ServerConfig(**ep.server))
              for name, ep in (endpoints or {}).items() if ep.kind == "vllm"}
    return PlanKeeper(main, extras) if extras else main
