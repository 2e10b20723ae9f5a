"""The engine plug-in interface: launch a server for a ServerConfig, hand back a context-managed handle."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from autotune.config import ServerConfig


@dataclass
class EngineHandle:
    url: str  # base URL, e.g. http://127.0.0.1:41234
    served_model: str  # the `model` field clients send
    pgid: int
    log_path: Path
    argv: list[str]
    env_overrides: dict[str, str] = field(default_factory=dict)
    startup_s: float = 0.0
    version: str = "unknown"
    # what the measurement may use beyond the OpenAI API: `reset_cache` (POST /reset_prefix_cache, so every window
    # starts cold) and `gauges` (vLLM's /metrics: queue depth, KV use, server-side histograms). An API has neither.
    capabilities: frozenset[str] = frozenset({"reset_cache", "gauges"})
    kind: str = "vllm"

    def metrics_text(self) -> str:  # overridden by engines that expose metrics
        return ""


class Engine(Protocol):
    def launch(self, server: ServerConfig, log_path: Path) -> EngineHandle: ...

    def stop(self, handle: EngineHandle) -> None: ...
