"""The knob registry and the trial config it produces.

A knob is either a *server* knob (changes the engine's argv/env, needs a relaunch) or a *client* knob
(changes how the load is generated). Adding a knob means: one entry in KNOBS, one field in ServerConfig or
ClientConfig, and (for server knobs) one line in the engine's argv builder.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, field_validator

from autotune.fmware import ARCHITECTURES, CONSTRAINTS, FORMATS, PROMPT_VARIANTS, REPAIRS, ROLES

Part = Literal["server", "client"]
SPEC_METHODS = ("none", "ngram", "draft_model")
DTYPES = ("auto", "float32", "float16", "bfloat16")


@dataclass(frozen=True)
class Knob:
    name: str
    part: Part
    type: type
    help: str
    allowed: tuple[Any, ...] | None = None  # closed set of values, when the knob has one
    min: float | None = None
    max: float | None = None


KNOBS: dict[str, Knob] = {
    k.name: k
    for k in [
        Knob("model", "server", str, "bundled model name (see `autotune models list`) or a model path/id"),
        Knob("dtype", "server", str, "--dtype", allowed=DTYPES),
        Knob("quantization", "server", str, "--quantization; 'none', a vLLM method, or a bundled variant"),
        Knob("max_num_seqs", "server", int, "--max-num-seqs", min=1),
        Knob("max_num_batched_tokens", "server", int, "--max-num-batched-tokens", min=16),
        Knob("block_size", "server", int, "--block-size", allowed=(1, 8, 16, 32, 64, 128)),
        Knob("enforce_eager", "server", bool, "--enforce-eager (skip torch.compile / graphs)"),
        Knob("enable_prefix_caching", "server", bool, "--enable-prefix-caching / --no-enable-prefix-caching"),
        Knob("enable_chunked_prefill", "server", bool, "--enable-chunked-prefill / --no-..."),
        Knob("max_model_len", "server", int, "--max-model-len", min=16),
        Knob("spec_method", "server", str, "speculative decoding method", allowed=SPEC_METHODS),
        Knob("num_speculative_tokens", "server", int, "speculative tokens per step", min=1, max=16),
        Knob("prompt_lookup_min", "server", int, "ngram: minimum lookup window", min=1),
        Knob("prompt_lookup_max", "server", int, "ngram: maximum lookup window", min=1),
        Knob("draft_model", "server", str, "draft_model: bundled name or path of the draft model"),
        Knob("seed", "server", int, "--seed", min=0),
        Knob("gpu_memory_utilization", "server", float, "--gpu-memory-utilization (cuda only)", min=0.05, max=1.0),
        Knob("kv_cache_space_gb", "server", int, "VLLM_CPU_KVCACHE_SPACE (cpu only), whole GiB: vLLM reads an "
             "integer and does not start on 0.5", min=1),
        Knob("cpu_threads_bind", "server", str, "VLLM_CPU_OMP_THREADS_BIND (cpu only): auto (all cores of the NUMA "
             "node but the reserved ones), nobind, or core ids such as 0-3"),
        Knob("cpu_reserved_cores", "server", int, "VLLM_CPU_NUM_OF_RESERVED_CPU (cpu only): cores kept from the "
             "OpenMP threads for the API server and scheduler (vLLM reserves 1; 0 gives the worker every core)",
             min=0),
        Knob("max_tokens", "client", int, "max output tokens per FM call (overrides the workload)", min=1),
        Knob("temperature", "client", float, "sampling temperature (overrides the workload)", min=0.0, max=2.0),
        Knob("architecture", "client", str, "cognitive architecture: #1 one_call, #2 parallel sub-questions, "
             "#3 sequential sub-questions, #4 two agents + judge", allowed=ARCHITECTURES),
        Knob("output_format", "client", str, "the format the model must answer in", allowed=FORMATS),
        Knob("constrained", "client", str, "vLLM structured outputs: none, json_schema (json only), regex, "
             "choice (labelled fields, one per call; minimal or text)",
             allowed=CONSTRAINTS),
        Knob("repair", "client", str, "malformed replies: none, cpu (salvage, no FM call), reask (one more call)",
             allowed=REPAIRS),
        Knob("semantic_cache", "client", bool, "reuse answers of semantically similar earlier tasks"),
        *(Knob(f"route_{role}", "client", str, f"where the {what} calls go: `engine` (the space's endpoint) or "
               "a name of the space's `endpoints`") for role, what in ROLES.items()),
        Knob("overflow_to", "client", str, "an endpoint of the space's `endpoints` that takes the engine's calls "
             "while the engine already owes `overflow_at` (a self-hosted queue spilling to an API)"),
        Knob("overflow_at", "client", int, "calls in flight to the engine at which further ones overflow", min=1),
        Knob("cache_threshold", "client", float, "cosine similarity needed for a cache hit", min=0.5, max=1.0),
        Knob("prompt_variant", "client", str, "zero_shot or few_shot (the workload's `few_shot` examples)",
             allowed=PROMPT_VARIANTS),
        Knob("judge_rounds", "client", int, "architecture judge: rounds before giving up", min=1, max=5),
    ]
}


class ServerConfig(BaseModel):
    """Everything that determines the engine process. Equal ServerConfigs can share one engine."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str = "smollm2-135m"
    dtype: str = "auto"
    quantization: str = "none"
    max_num_seqs: int | None = None
    max_num_batched_tokens: int | None = None
    block_size: int | None = None
    enforce_eager: bool = False
    enable_prefix_caching: bool | None = None
    enable_chunked_prefill: bool | None = None
    max_model_len: int | None = None
    spec_method: str = "none"
    num_speculative_tokens: int = 3
    prompt_lookup_min: int | None = None
    prompt_lookup_max: int | None = None
    draft_model: str | None = None
    seed: int | None = 0
    gpu_memory_utilization: float | None = None
    kv_cache_space_gb: int | None = None
    cpu_threads_bind: str | None = None
    cpu_reserved_cores: int | None = None


class ClientConfig(BaseModel):
    """Everything that shapes the application and its load but not the engine; changing only these never
    restarts the engine. None means 'use the workload's value'."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_tokens: int | None = None
    temperature: float | None = None
    architecture: str = "one_call"
    output_format: str = "json"
    constrained: str = "none"
    repair: str = "none"
    semantic_cache: bool = False
    cache_threshold: float = 0.9
    prompt_variant: str = "zero_shot"
    judge_rounds: int = 2
    # where each FM role's calls go (None: the space's `engine`); changing one keeps every engine running
    route_one_call: str | None = None
    route_subquestions: str | None = None
    route_agents: str | None = None
    route_judge: str | None = None
    route_reask: str | None = None
    overflow_to: str | None = None
    overflow_at: int | None = None

    @field_validator("route_one_call", "route_subquestions", "route_agents", "route_judge", "route_reask")
    @classmethod
    def _engine_is_the_default(cls, v: str | None) -> str | None:
        return None if v == "engine" else v  # one identity for "the space's engine", named or not


class TrialConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    server: ServerConfig
    client: ClientConfig

    def flat(self) -> dict[str, Any]:
        return {**self.server.model_dump(), **self.client.model_dump()}


def split_values(values: dict[str, Any]) -> TrialConfig:
    """Sampled + fixed knob values -> TrialConfig (server part, client part)."""
    server = {k: v for k, v in values.items() if KNOBS[k].part == "server"}
    client = {k: v for k, v in values.items() if KNOBS[k].part == "client"}
    return TrialConfig(server=ServerConfig(**server), client=ClientConfig(**client))


def check_value(name: str, value: Any) -> str | None:
    """Return the broken rule for `value` of knob `name`, or None when it is valid."""
    knob = KNOBS[name]
    if knob.type is bool:
        ok_type = isinstance(value, bool)
    elif knob.type is int:
        ok_type = isinstance(value, int) and not isinstance(value, bool)
    elif knob.type is float:
        ok_type = isinstance(value, int | float) and not isinstance(value, bool)
    else:
        ok_type = isinstance(value, str)
    if not ok_type:
        return f"must be of type {knob.type.__name__}"
    if knob.allowed is not None and value not in knob.allowed:
        return f"must be one of {list(knob.allowed)}"
    if knob.min is not None and value < knob.min:
        return f"must be >= {knob.min:g}"
    if knob.max is not None and value > knob.max:
        return f"must be <= {knob.max:g}"
    return None
