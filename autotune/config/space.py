"""The search-space file: engine, hardware, knobs, objectives, constraints, SLA."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from autotune.config.endpoints import (
    DEFAULT_ENGINE_PYTHON,
    EndpointConfig,
    EngineConfig,
    NamedEndpoint,
    OpenAIEndpointConfig,
    Strict,
)
from autotune.config.knobs import KNOBS, check_value
from autotune.config.loader import load_yaml, parse_model
from autotune.config.metric_names import KNOWN_METRICS
from autotune.config.samplers import SamplerName
from autotune.errors import ConfigError
from autotune.secrets import expand, is_secret_name, reference, register, register_value


class HardwareConfig(Strict):
    name: str = "2-core CPU VM"
    usd_per_hour: float = Field(0.10, ge=0)


class KnobSpec(Strict):
    """One of: `choices`, a `low`/`high` range (optionally `step`, `log`), or a fixed `value`."""

    choices: list[Any] | None = None
    low: float | None = None
    high: float | None = None
    step: float | None = Field(None, gt=0)
    log: bool = False
    value: Any = None
    when: dict[str, list[Any]] | None = None  # sample only when every named knob has one of these values

    @model_validator(mode="after")
    def _one_form(self) -> KnobSpec:
        forms = [self.choices is not None, self.low is not None or self.high is not None, self.value is not None]
        if sum(forms) != 1:
            raise ValueError("give exactly one of `choices`, `low`+`high`, or `value`")
        if self.choices is not None and not self.choices:
            raise ValueError("`choices` must not be empty")
        if forms[1]:
            if self.low is None or self.high is None:
                raise ValueError("a range needs both `low` and `high`")
            if self.low > self.high:
                raise ValueError(f"empty or inverted range: low {self.low:g} > high {self.high:g}")
            if self.log and self.low <= 0:
                raise ValueError("a log range needs low > 0")
        return self

    def candidates(self) -> list[Any]:
        if self.choices is not None:
            return list(self.choices)
        if self.value is not None:
            return [self.value]
        return [self.low, self.high]


def _known_metric(kind: str):
    def check(cls, v: str) -> str:
        if v not in KNOWN_METRICS:
            raise ValueError(f"unknown {kind} metric; known: {sorted(KNOWN_METRICS)}")
        return v

    return field_validator("metric")(classmethod(check))


class Objective(Strict):
    metric: str
    direction: Literal["minimize", "maximize"]
    _known = _known_metric("objective")


class Constraint(Strict):
    metric: str
    op: Literal["<=", ">="]
    value: float
    _known = _known_metric("constraint")


class SLA(Strict):
    """Thresholds (ms) for SLA attainment and goodput: per FM request (ttft, tpot, e2e) and per application
    task (task_ms: end-to-end task latency); unset thresholds are not checked."""

    ttft_ms: float | None = Field(None, gt=0)
    tpot_ms: float | None = Field(None, gt=0)
    e2e_ms: float | None = Field(None, gt=0)
    task_ms: float | None = Field(None, gt=0)
    attainment: float = Field(0.95, gt=0, le=1)  # share of tasks that must meet every threshold set


def default_objectives() -> list[Objective]:
    return [
        Objective(metric="p95_task_ms", direction="minimize"),
        Objective(metric="usd_per_1k_tasks", direction="minimize"),
        Objective(metric="quality", direction="maximize"),
    ]


class SearchDefaults(Strict):
    n_trials: int = Field(6, ge=1)
    max_failures: int = Field(5, ge=0)
    seed: int = Field(0, ge=0, le=2**32 - 1)
    sampler: SamplerName = "tpe"  # the registry's names (config/samplers.py)
    # warm start: configs measured first in a new study (e.g. today's production config); knob -> value
    enqueue: list[dict[str, Any]] = Field(default_factory=list)
    # multi-fidelity: measure every trial for `screening_s` first; only one that could still reach the front
    # (not dominated by it even when `screening_margin` better on every objective) gets the full window
    screening_s: float | None = Field(None, gt=0)
    # `auto`: from measured noise (how far screen and full windows of the same trials disagreed); a number:
    # a fixed relative margin
    screening_margin: Annotated[float, Field(ge=0, le=10)] | Literal["auto"] = "auto"
    # trial economy: once a model guides the sampler, ask this many trials at once and run equal server parts back
    # to back (engine reuse; TPE treats the batch's running trials as liars). The sampler's independent draws
    # (random start, a generation) are asked together whatever this is. It sees a batch's results only after it:
    # benchmarks/replay_samplers.py measures what that costs
    batch: int = Field(4, ge=1, le=64)
    # noise without `--confirm`: the first measured config is measured again this many times, early, each on a
    # fresh engine, so every front has intervals and classes (autotune/search/noise_window.py); not trials
    noise_repeats: int = Field(1, ge=0, le=10)


STUDY_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$"  # also a folder name under the run dir: no `/`, no `..`


class SpaceConfig(Strict):
    name: str = Field(pattern=STUDY_NAME)
    description: str = ""
    workload: str | None = None  # path relative to this file
    engine: EndpointConfig = Field(default_factory=EngineConfig)
    # more endpoints the `route_<role>` knobs can send an FM role's calls to, by name: APIs, or more self-hosted
    # engines on fixed server parts; `engine` is the above
    endpoints: dict[Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$")], NamedEndpoint] = Field(default_factory=dict)
    hardware: HardwareConfig = Field(default_factory=HardwareConfig)
    knobs: dict[str, KnobSpec] = Field(default_factory=dict)
    objectives: list[Objective] = Field(default_factory=default_objectives, min_length=1)
    constraints: list[Constraint] = Field(default_factory=list)
    sla: SLA = Field(default_factory=SLA)
    search: SearchDefaults = Field(default_factory=SearchDefaults)

    @field_validator("knobs")
    @classmethod
    def _knobs_known_and_valid(cls, knobs: dict[str, KnobSpec]) -> dict[str, KnobSpec]:
        seen: list[str] = []
        for name, spec in knobs.items():
            if name not in KNOBS:
                raise ValueError(f"unknown knob {name!r}; known knobs: {sorted(KNOBS)}")
            typ = KNOBS[name].type
            if spec.low is not None and typ not in (int, float):
                raise ValueError(f"knob {name!r} is {typ.__name__}: use `choices`, not a range")
            for cand in spec.candidates():
                cand = int(cand) if typ is int and isinstance(cand, float) and cand.is_integer() else cand
                rule = check_value(name, cand)
                if rule:
                    raise ValueError(f"knob {name!r}: {rule}, got {cand!r}")
            for dep, values in (spec.when or {}).items():
                if dep not in seen:
                    raise ValueError(f"knob {name!r}: `when` must name a knob listed before it, got {dep!r}")
                dep_cands = knobs[dep].candidates()
                if knobs[dep].low is None and not any(v in dep_cands for v in values):
                    raise ValueError(f"knob {name!r}: `when.{dep}` matches no value of {dep}: {values!r}")
            seen.append(name)
        return knobs

    @model_validator(mode="after")
    def _enqueued_configs_fit_the_space(self) -> SpaceConfig:
        for i, cfg in enumerate(self.search.enqueue):
            for name, value in cfg.items():
                spec = self.knobs.get(name)
                if spec is None:
                    raise ValueError(f"search.enqueue[{i}]: {name!r} is not a knob of this space")
                if spec.choices is not None and value not in spec.choices:
                    raise ValueError(f"search.enqueue[{i}].{name}: {value!r} is not one of {spec.choices}")
                if spec.low is not None and not spec.low <= value <= spec.high:
                    raise ValueError(f"search.enqueue[{i}].{name}: {value!r} is outside [{spec.low}, {spec.high}]")
        return self

    @model_validator(mode="after")
    def _routes_name_endpoints(self) -> SpaceConfig:
        if "engine" in self.endpoints:
            raise ValueError("endpoints: `engine` names the space's own endpoint; give this one another name")
        for name, spec in self.knobs.items():
            if name.startswith("route_") or name == "overflow_to":
                wrong = [v for v in spec.candidates() if v != "engine" and v not in self.endpoints]
                if wrong:
                    raise ValueError(f"knob {name!r}: {wrong} is no endpoint of this space (`engine` or one of "
                                     f"`endpoints`: {sorted(self.endpoints)})")
        return self

    @model_validator(mode="after")
    def _server_knobs_need_a_server(self) -> SpaceConfig:
        """An API endpoint runs no engine the tuner could configure: a server knob there would change nothing."""
        if self.engine.kind != "vllm":
            server = [n for n in self.knobs if KNOBS[n].part == "server"]
            if server:
                raise ValueError(f"knobs {server} configure a self-hosted engine; `engine.kind: {self.engine.kind}` "
                                 "runs none (its model is `engine.model`)")
        return self

    @model_validator(mode="after")
    def _objective_names_unique(self) -> SpaceConfig:
        names = [o.metric for o in self.objectives]
        if len(names) != len(set(names)):
            raise ValueError(f"objectives repeat a metric: {names}")
        return self


def load_space(path: str | Path, check_paths: bool = True) -> SpaceConfig:
    data = load_yaml(path)
    space = parse_model(SpaceConfig, data, str(path))
    for name, ep in space.endpoints.items():
        if isinstance(ep, OpenAIEndpointConfig):
            register_api_key(ep, str(path), strict=check_paths, key=f"endpoints.{name}.api_key_env")
        else:
            register_engine_secrets(ep, str(path), strict=check_paths)
    if isinstance(space.engine, OpenAIEndpointConfig):
        register_api_key(space.engine, str(path), strict=check_paths)
        return space
    register_engine_secrets(space.engine, str(path), strict=check_paths)
    if check_paths:
        check_engine_launcher(space, str(path))
        check_host(space.engine.host, str(path))
    return space


def register_api_key(api: OpenAIEndpointConfig, file: str, strict: bool, key: str = "engine.api_key_env") -> None:
    """The API key joins the redaction policy (it is in every request's header); `strict`: an unset variable is an
    error now, not 401s later."""
    if api.api_key_env is None:
        return
    value = os.environ.get(api.api_key_env)
    if value is None:
        if strict:
            raise ConfigError(file, key, f"names ${api.api_key_env}, which is not set in this "
                              "environment", show_value=False)
        return
    register([value])  # whatever the variable's name: it holds a key


def check_host(host: str, file: str) -> None:
    """The engine binds here and the load generator connects here: it must resolve on this host."""
    import socket

    try:
        socket.getaddrinfo(host, None)
    except (OSError, UnicodeError) as exc:
        raise ConfigError(file, "engine.host", f"does not resolve here ({exc})", host) from None


def register_engine_secrets(engine: EngineConfig, file: str, strict: bool) -> None:
    """Secret values of `engine.env` (literal, or `${NAME}` from this environment) join the redaction policy.
    `strict`: a reference to an unset variable is an error now, not a failed launch later."""
    for name, value in engine.env.items():
        ref = reference(value)
        if ref is None:
            register_value(name, value)
            continue
        try:
            resolved = expand(value)
        except KeyError:
            if strict:
                raise ConfigError(file, f"engine.env.{name}", f"refers to ${{{ref}}}, which is not set in this "
                                  "environment", show_value=False) from None
            continue
        register_value(ref if is_secret_name(ref) else name, resolved)


def check_engine_launcher(space: SpaceConfig, file: str) -> None:
    """An engine interpreter/command that does not exist is a config error, caught before any trial."""
    exe = space.engine.launcher()[0]
    key = "engine.command" if space.engine.command else "engine.python"
    if "/" in exe:
        path = Path(exe)
        if not path.exists():
            hint = " (run `make setup` to create the default engine env)" if exe == DEFAULT_ENGINE_PYTHON else ""
            raise ConfigError(file, key, f"engine interpreter does not exist{hint}", exe)
        if not path.is_file():
            raise ConfigError(file, key, "engine interpreter must be a file, not a directory", exe)
        if not os.access(path, os.X_OK):
            raise ConfigError(file, key, "engine interpreter is not executable (chmod +x?)", exe)
    elif shutil.which(exe) is None:
        raise ConfigError(file, key, "engine command not found on PATH (or not executable)", exe)


def workload_path(space: SpaceConfig, space_file: str | Path) -> Path | None:
    if space.workload is None:
        return None
    return (Path(space_file).parent / space.workload).resolve()
