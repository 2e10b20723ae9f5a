"""The search-space file: engine, hardware, knobs, objectives, constraints, SLA."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from autotune.config.knobs import KNOBS, check_value
from autotune.config.loader import load_yaml, parse_model
from autotune.config.metric_names import KNOWN_METRICS
from autotune.config.samplers import SamplerName
from autotune.errors import ConfigError
from autotune.secret_detect import secret_parts
from autotune.secrets import argv_secrets, expand, is_secret_name, reference, register_value

DEFAULT_ENGINE_PYTHON = ".venv-engine/bin/python"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)  # `.nan` or `.inf` is never a valid setting


class EngineConfig(Strict):
    """How to start the engine. `command` wins over `python`; both come from config, never from code."""

    kind: Literal["vllm"] = "vllm"
    python: str = DEFAULT_ENGINE_PYTHON
    command: list[str] | None = None  # e.g. ["vllm", "serve"] or a container entrypoint
    device: Literal["cpu", "cuda"] = "cpu"
    host: str = "127.0.0.1"
    env: dict[str, str] = Field(default_factory=dict)
    extra_args: list[str] = Field(default_factory=list)
    startup_timeout_s: float = Field(600.0, gt=0)
    shutdown_timeout_s: float = Field(20.0, gt=0)
    # engines kept frozen (SIGSTOP) when the server part changes, thawed when it comes back instead of relaunched;
    # each keeps its memory, so leave 0 where that memory is a GPU's (autotune.engines.keeper)
    park: int = Field(0, ge=0, le=8)

    @field_validator("command", "extra_args")
    @classmethod
    def _no_secret_in_argv(cls, argv: list[str] | None) -> list[str] | None:
        for i in argv_secrets(argv or []):
            raise ValueError(f"item {i} ({(argv or [])[i].split('=', 1)[0].split()[0]!r}...) carries a secret: put "
                             "it in `engine.env` (vLLM reads VLLM_API_KEY and HF_TOKEN from its environment); an "
                             "argv is visible to every user of this host and the engine logs it")
        for i, arg in enumerate(argv or []):
            if secret_parts(arg):
                raise ValueError(f"item {i} carries a credential (by its shape: a key, token or URL password): put "
                                 "it in `engine.env`; an argv is visible to every user of this host")
        return argv

    @field_validator("env")
    @classmethod
    def _env_names(cls, env: dict[str, str]) -> dict[str, str]:
        for name, value in env.items():
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
                raise ValueError(f"{name!r} is not an environment variable name")
            if "${" in value and reference(value) is None:
                raise ValueError(f"{name}: a reference to the tuner's environment reads `${{NAME}}` alone")
        return env

    def launcher(self) -> list[str]:
        if self.command:
            return list(self.command)
        return [self.python, "-m", "vllm.entrypoints.openai.api_server"]


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
    engine: EngineConfig = Field(default_factory=EngineConfig)
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
    def _objective_names_unique(self) -> SpaceConfig:
        names = [o.metric for o in self.objectives]
        if len(names) != len(set(names)):
            raise ValueError(f"objectives repeat a metric: {names}")
        return self


def load_space(path: str | Path, check_paths: bool = True) -> SpaceConfig:
    data = load_yaml(path)
    space = parse_model(SpaceConfig, data, str(path))
    register_engine_secrets(space.engine, str(path), strict=check_paths)
    if check_paths:
        check_engine_launcher(space, str(path))
        check_host(space.engine.host, str(path))
    return space


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
