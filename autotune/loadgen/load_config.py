"""The load generator's config: what `run_load` writes to `load-config.json` and the locustfile validates on
read, across the process boundary. An unknown or misspelt key is an error, so a config and its reader can never
silently disagree. Pure (pydantic only): the Locust process imports it."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ArrivalSpec(Strict):
    """`closed`: `users` users, each starts its next task when the previous one ends. `poisson`: open loop at
    `rate` tasks/s (an absolute seeded schedule; `users` is ignored)."""

    mode: Literal["closed", "poisson"] = "closed"
    users: int | None = Field(1, ge=1)
    rate: float | None = Field(None, gt=0)


class Route(Strict):
    """Where one FM role's calls go instead of the engine: an API root, its model, and the environment variable
    the load generator finds its key in (the value travels through the environment, never this file)."""

    name: str  # the space's endpoint name, recorded on each call
    url: str
    model: str
    key_var: str | None = None
    api: bool = True  # an API: sent only the OpenAI fields (no vLLM extensions such as continuous usage stats)


class LevelRule(Strict):
    """A capacity level judges itself as it runs (autotune.sla): it stops once its verdict cannot change."""

    target: float = Field(gt=0, le=1)  # SLA attainment the level must reach
    confidence: float = Field(gt=0, lt=1)  # of the Wilson interval on attainment
    min_tasks: int = Field(ge=1)  # judged tasks before the level may stop early
    sla: dict[str, float | None]  # task_ms, ttft_ms, tpot_ms (None: not set)
    abandon_on_fail: bool = False  # a certain fail abandons its in-flight tasks as misses (never the first level)
    # a level's continuation (autotune.measure.levels) judges the level's tasks so far with its own: it stops
    # as soon as the pooled verdict cannot change
    prior_met: int = Field(0, ge=0)
    prior_missed: int = Field(0, ge=0)
    segment: int = Field(0, ge=0)  # 0: the level's first window; k: its k-th continuation (a fresh arrival draw)


class LoadConfig(Strict):
    tasks: list[dict[str, Any]] = Field(min_length=1)  # rendered items: {id, context, task, questions}
    app: dict[str, Any]  # the client knobs and prompts, as autotune.fmware.AppConfig fields
    model: str | None = None  # the `model` clients send; None: ask the server for its first model
    seed: int = 0
    arrival: ArrivalSpec = Field(default_factory=ArrivalSpec)
    warmup_s: float = Field(2.0, ge=0)
    duration_s: float = Field(10.0, gt=0)
    drain_timeout_s: float = Field(30.0, ge=0)
    request_timeout_s: float = Field(120.0, gt=0)
    stall_timeout_s: float = Field(20.0, gt=0)
    processes: int = Field(1, ge=1)  # >1: Locust's distributed mode (a master and N workers on this host)
    out_dir: str = "locust-out"
    eval_first: int = Field(0, ge=0)  # the first N tasks are the evaluation items: the load walks them first
    eval_seen: list[str] = Field(default_factory=list)  # evaluation items earlier levels graded: walked last
    level: LevelRule | None = None  # set: a capacity level, open until its verdict is certain
    once: bool = False  # the evaluation completion pass: every task exactly once, then the window ends
    server_metrics: bool = True  # scrape and poll the engine's /metrics (a self-hosted vLLM; an API has none)
    routes: dict[str, Route] = Field(default_factory=dict)  # FM role -> its endpoint (autotune.fmware.roles)
    # overflow: a call for the engine goes here instead while the engine owes `overflow_at` calls already
    overflow: Route | None = None
    overflow_at: int = Field(8, ge=1)
    # set by run_load for a standby started before its load was known: the users, the backstop, the host
    load_users: int | None = Field(None, ge=1)
    run_time_s: int | None = Field(None, ge=1)
    host: str | None = None

    def with_(self, **changes: Any) -> LoadConfig:
        """A copy with some keys changed, validated again (a nested dict becomes its model)."""
        return LoadConfig.model_validate({**self.model_dump(), **changes})

    def users(self) -> int:
        """Locust users: one per closed-loop user; open loop, one per process (each runs its share of arrivals)."""
        return (self.arrival.users or 1) if self.arrival.mode == "closed" else self.processes

    def backstop_s(self) -> int:
        """Locust's own run-time backstop: the load's whole span and a margin."""
        return int(self.warmup_s + self.duration_s + self.drain_timeout_s + 30)


def read_load_config(path: str | Path) -> LoadConfig:
    return LoadConfig.model_validate_json(Path(path).read_text())


BUILT_IN = LoadConfig(  # without AUTOTUNE_LOAD_CONFIG the locustfile sends this one task in closed loop
    tasks=[{"id": "hello", "context": "Greet the reader.", "task": "Say hello in five words.",
            "questions": {"greeting": "Say hello in five words."}}],
    app={"fields": ["greeting"], "output_format": "minimal", "max_tokens": 32})
