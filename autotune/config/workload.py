"""The workload file: dataset, prompt, arrival model, windows, sampling parameters."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from autotune.config.loader import load_yaml, parse_model
from autotune.errors import ConfigError


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Arrival(Strict):
    """Open loop (`poisson` at `rate` req/s, arrivals independent of completions) or closed loop (`users`)."""

    mode: Literal["poisson", "closed"] = "closed"
    rate: float | None = Field(None, gt=0)
    users: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _shape(self) -> Arrival:
        if self.mode == "poisson" and self.rate is None:
            raise ValueError("mode poisson needs `rate` (requests/s)")
        if self.mode == "closed" and self.users is None:
            raise ValueError("mode closed needs `users`")
        return self


class Prompt(Strict):
    system: str = ""
    template: str = "{text}"  # str.format()-ed with the dataset item's `input` mapping


class WorkloadConfig(Strict):
    name: str
    task: Literal["extraction"] = "extraction"  # selects the scorer
    dataset: str  # JSONL, relative to the workload file
    prompt: Prompt = Field(default_factory=Prompt)
    arrival: Arrival = Field(default_factory=lambda: Arrival(mode="closed", users=4))
    warmup_s: float = Field(5.0, ge=0)
    duration_s: float = Field(30.0, gt=0)
    drain_timeout_s: float = Field(60.0, ge=0)
    request_timeout_s: float = Field(120.0, gt=0)
    max_tokens: int = Field(96, ge=1)
    temperature: float = Field(0.0, ge=0, le=2)
    seed: int = 0

    def dataset_path(self, workload_file: str | Path) -> Path:
        return (Path(workload_file).parent / self.dataset).resolve()


def load_workload(path: str | Path) -> WorkloadConfig:
    wl = parse_model(WorkloadConfig, load_yaml(path), str(path))
    ds = wl.dataset_path(path)
    if not ds.is_file():
        raise ConfigError(str(path), "dataset", "dataset file does not exist", str(ds))
    _check_template(wl, ds, str(path))
    return wl


def _check_template(wl: WorkloadConfig, dataset: Path, file: str) -> None:
    """The template must format with the first dataset item: a typo fails here, not mid-trial."""
    with dataset.open() as f:
        first = f.readline()
    try:
        item = json.loads(first)
        fields = item["input"]
    except (ValueError, KeyError, TypeError):
        raise ConfigError(str(dataset), "line 1", "dataset lines must be JSON objects with an `input` mapping "
                          "(and `id`, `reference`)", first.strip()[:80]) from None
    try:
        wl.prompt.template.format(**fields)
    except (KeyError, IndexError) as exc:
        raise ConfigError(file, "prompt.template", f"names a field the dataset items lack; they have "
                          f"{sorted(fields)}", str(exc)) from None
