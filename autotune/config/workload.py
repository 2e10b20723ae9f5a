"""The workload file: dataset, prompt, arrival model, windows, sampling parameters."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from autotune.config.dataset import read_items
from autotune.config.loader import load_yaml, parse_model
from autotune.errors import ConfigError
from autotune.secrets import reference, register


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)  # `.nan` or `.inf` is never a valid setting


class Arrival(Strict):
    """Open loop (`poisson` at `rate` req/s, arrivals independent of completions) or closed loop (`users`)."""

    mode: Literal["poisson", "closed"] = "closed"
    rate: float | None = Field(None, gt=0, le=1e6)
    users: int | None = Field(None, ge=1, le=100_000)

    @model_validator(mode="after")
    def _shape(self) -> Arrival:
        if self.mode == "poisson" and self.rate is None:
            raise ValueError("mode poisson needs `rate` (requests/s)")
        if self.mode == "closed" and self.users is None:
            raise ValueError("mode closed needs `users`")
        return self


class Prompt(Strict):
    """Templates are str.format()-ed with the dataset item's `input` mapping."""

    system: str = ""
    context: str = "{text}"  # what the model reads (article, problem); also the semantic cache's key
    task: str  # asks for every field at once (architectures #1 and #4)


class Field_(Strict):
    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    question: str  # the sub-question for this field alone (architectures #2 and #3)
    # a classification: the value must be exactly one of these (constraints restrict it, validity counts it)
    labels: list[str] | None = None

    @field_validator("labels", mode="before")
    @classmethod
    def _labels(cls, v: Any) -> Any:
        if v is None:
            return v
        if not isinstance(v, list):
            raise ValueError("must be a list of labels")
        if not v:
            raise ValueError("must list at least one label, got []")
        for lb in v:
            if not isinstance(lb, str):  # YAML reads yes/no/on/off/1.0 unquoted as booleans and numbers
                raise ValueError(f"label {lb!r} is a {type(lb).__name__}, not a string (quote it in YAML)")
            if not lb.strip() or lb != lb.strip() or "\n" in lb:
                raise ValueError(f"label {lb!r} must be non-empty, on one line, without surrounding spaces")
        repeated = sorted({lb for lb in v if v.count(lb) > 1})
        if repeated:
            raise ValueError(f"labels must be distinct, {repeated[0]!r} repeats")
        return v


class Duplicates(Strict):
    """Near-duplicate traffic: this share of items is sent a second time, paraphrased (semantic cache food)."""

    share: float = Field(0.0, ge=0, le=1)
    seed: int = 0


class Capacity(Strict):
    """`load_protocol: capacity`: each trial's capacity at SLA, by open-loop levels on the running engine (see
    autotune/measure). The first level, at `start_rate`, is also the stated operating load at which the
    latency objectives (`p95_task_ms_at_load`) are read, the same load for every config."""

    start_rate: float = Field(0.5, gt=0, le=1e6)  # tasks/s
    # the resolution: stop when first failing / last passing <= 1 + tolerance (autotune/measure/capacity.py)
    tolerance: float = Field(0.1, gt=0, le=1)
    max_levels: int = Field(8, ge=1, le=50)
    max_rate: float = Field(256.0, gt=0, le=1e6)
    min_rate: float = Field(0.05, ge=0, le=1e6)  # nothing passes at this rate: capacity 0
    level_s: float = Field(20.0, gt=0, le=3600)  # the window of one level (a resolved level stops sooner)
    # a level whose verdict is a coin flip (misses, and an interval that still holds the target:
    # autotune.sla.straddles) gets a continuation window this long at the same rate, judged with it, instead of
    # being decided by its point estimate; 0: never
    extend_s: float = Field(20.0, ge=0, le=3600)
    # a low-rate level's window is stretched to this many expected arrivals (level_s raised to n / rate): a
    # window too short to hold any task cannot say whether the config holds the SLA there
    min_expected_tasks: int = Field(0, ge=0, le=100_000)
    warmup_s: float = Field(2.0, ge=0, le=3600)
    min_tasks: int = Field(20, ge=1, le=100_000)  # judged tasks before a level may stop early
    confidence: float = Field(0.9, gt=0, lt=1)  # of the Wilson interval on attainment
    max_lag_ms: float = Field(250.0, gt=0)  # the generator is behind beyond this p95 lag: the level is invalid

    def window_s(self, rate: float) -> float:
        """A level's longest window at `rate`: `level_s`, stretched to `min_expected_tasks` expected arrivals."""
        return max(self.level_s, self.min_expected_tasks / rate)


class WorkloadConfig(Strict):
    name: str
    scorer: str = "extraction"  # built-in (extraction | arithmetic) or `module:function` (see README)
    dataset: str  # JSONL, relative to the workload file: {id, input: {...}, reference: {...}}
    fields: list[Field_] = Field(min_length=1)  # the answer's fields, ordered easy -> hard
    prompt: Prompt
    few_shot: str | None = None  # JSONL of worked examples (same shape as the dataset) for prompt_variant few_shot
    few_shot_n: int = Field(2, ge=1, le=100)
    duplicates: Duplicates = Field(default_factory=Duplicates)
    arrival: Arrival = Field(default_factory=lambda: Arrival(mode="closed", users=4))
    warmup_s: float = Field(5.0, ge=0, le=3600)
    duration_s: float = Field(30.0, gt=0, le=86_400)
    drain_timeout_s: float = Field(60.0, ge=0, le=3600)
    # load-generator processes: >1 runs Locust's distributed mode (master + N workers) for loads one process
    # cannot generate; each worker has its own semantic cache
    processes: int = Field(1, ge=1, le=64)
    request_timeout_s: float = Field(120.0, gt=0, le=3600)
    # no-progress watchdog: no token or response from the engine for this long while requests are outstanding
    # ends the load and fails the trial as `engine_hung` (well under drain_timeout_s: a frozen engine costs
    # seconds, not a drain)
    stall_timeout_s: float = Field(20.0, gt=0, le=3600)
    max_tokens: int = Field(96, ge=1, le=1_000_000)
    temperature: float = Field(0.0, ge=0, le=2)
    seed: int = 0
    # bearer token for a server that demands one (`${NAME}` reads it from the environment); default: the
    # engine's VLLM_API_KEY. It reaches the load generator through its environment, never a file.
    api_key: str | None = None
    # `fixed`: one window at `arrival` (quick; its numbers are at that fixed load). `capacity`: levels of
    # open-loop load find each trial's capacity at SLA (the highest task rate that holds it)
    load_protocol: Literal["fixed", "capacity"] = "fixed"
    capacity: Capacity = Field(default_factory=Capacity)
    # quality is graded on one fixed evaluation set for every trial of a study (paired comparisons): this many
    # tasks chosen by `seed` (40 by default, all when the dataset is smaller), or `all`. Items the measured loads
    # did not cover are run once at `eval_concurrency` closed-loop users after the load (the completion pass),
    # so the set's size bounds what grading costs (autotune.measure.eval_budget)
    eval_items: Annotated[int, Field(ge=1, le=1_000_000)] | Literal["all"] = 40
    eval_concurrency: int = Field(4, ge=1, le=10_000)

    def dataset_path(self, workload_file: str | Path) -> Path:
        return (Path(workload_file).parent / self.dataset).resolve()

    def few_shot_path(self, workload_file: str | Path) -> Path | None:
        return (Path(workload_file).parent / self.few_shot).resolve() if self.few_shot else None

    @model_validator(mode="after")
    def _stall_before_request_timeout(self) -> WorkloadConfig:
        if self.stall_timeout_s >= self.request_timeout_s:
            raise ValueError(f"stall_timeout_s ({self.stall_timeout_s:g}) must be below request_timeout_s "
                             f"({self.request_timeout_s:g}): a timed-out request counts as a response")
        return self

    @model_validator(mode="after")
    def _unique_fields(self) -> WorkloadConfig:
        names = [f.name for f in self.fields]
        if len(names) != len(set(names)):
            raise ValueError(f"fields repeat a name: {names}")
        return self


def load_workload(path: str | Path, host_checks: bool = True) -> WorkloadConfig:
    """Parse and check a workload: every dataset line, templates, scorer; `host_checks`: also that an
    `api_key: ${NAME}` is set here (not needed to export or report)."""
    wl = parse_model(WorkloadConfig, load_yaml(path), str(path))
    ds = wl.dataset_path(path)
    if not ds.is_file():
        raise ConfigError(str(path), "dataset", "dataset file does not exist", str(ds))
    # every line, so `search` cannot meet a bad one mid-study
    check_references(wl, read_items(ds, templates(wl), str(path)), ds, every_field=False)
    shots = wl.few_shot_path(path)
    if shots is not None:
        if not shots.is_file():
            raise ConfigError(str(path), "few_shot", "few-shot file does not exist", str(shots))
        check_references(wl, read_items(shots, templates(wl), str(path)), shots, every_field=True)
    api_key = wl.api_key
    if api_key is not None:
        ref = reference(api_key)
        if ref is not None and ref not in os.environ and host_checks:
            raise ConfigError(str(path), "api_key", f"refers to ${{{ref}}}, which is not set in this environment",
                              show_value=False)
        register([api_key if ref is None else os.environ.get(ref)])
    from autotune.config.scorers import resolve_scorer

    resolve_scorer(wl.scorer, Path(path).parent, str(path))
    return wl


def check_references(wl: WorkloadConfig, items: list[dict], file: Path, every_field: bool) -> None:
    """A labelled field's reference (a string) must be one of its labels; `every_field` (few-shot examples,
    whose reference is the worked answer the prompt shows): every field must have a reference."""
    for item in items:
        ref = item["reference"]
        for f in wl.fields:
            where = f"item {item['id']!r}: reference.{f.name}"
            if f.name not in ref:
                if every_field:
                    raise ConfigError(str(file), where, "is missing: a few-shot example answers every field",
                                      show_value=False)
                continue
            value = ref[f.name]  # a scorer may take another shape (a list of answers): only strings are checked
            if f.labels and (every_field or isinstance(value, str)) and str(value) not in f.labels:
                raise ConfigError(str(file), where, f"must be one of the field's labels {f.labels}", value)


def templates(wl: WorkloadConfig) -> dict[str, str]:
    """Every template the workload formats with an item's `input` (key in the workload file -> template)."""
    return {"prompt.context": wl.prompt.context, "prompt.task": wl.prompt.task,
            **{f"fields.{f.name}.question": f.question for f in wl.fields}}
