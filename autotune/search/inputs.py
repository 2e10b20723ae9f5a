"""What every trial of a search shares, read and checked before any study or run exists: the models the space
can pick are servable here, and the workload's tasks, references, few-shot examples, scorer and fixed evaluation
set (the evaluation items first in the task order, so the measured loads grade most of them)."""

from __future__ import annotations

from pathlib import Path

from autotune.config import ServerConfig, SpaceConfig, WorkloadConfig, resolve_scorer
from autotune.errors import ConfigError
from autotune.measure import eval_ids
from autotune.models import problem as model_problem
from autotune.search.trial import TrialInputs
from autotune.workloads import few_shot_examples, read_dataset, render_tasks


def check_models(space: SpaceConfig, file: str) -> None:
    """Every model the space can pick must be servable here (prepared bundled name or existing path); an API
    endpoint serves its own (checked when it is first called)."""
    if space.engine.kind != "vllm":
        return
    spec = space.knobs.get("model")
    candidates = spec.candidates() if spec else [ServerConfig().model]
    quant = space.knobs.get("quantization")
    for value in candidates:
        for q in quant.candidates() if quant else ["none"]:
            why = model_problem(str(value), str(q))
            if why:
                key = "knobs.model" if spec else "model (default)"
                raise ConfigError(file, key, why + (f" (quantization {q})" if q != "none" else ""), value)
    draft = space.knobs.get("draft_model")
    for value in draft.candidates() if draft else []:
        why = model_problem(str(value))
        if why:
            raise ConfigError(file, "knobs.draft_model", why, value)


def trial_inputs(space: SpaceConfig, workload: WorkloadConfig, wl_file: Path) -> TrialInputs:
    items = read_dataset(workload, workload.dataset_path(wl_file))
    tasks, references = render_tasks(workload, items)
    n_items = None if workload.eval_items == "all" else workload.eval_items
    chosen = eval_ids([t["id"] for t in tasks], n_items, workload.seed)
    first = set(chosen)  # the load walks the evaluation items first, so the measured loads grade most of them
    tasks = [t for t in tasks if t["id"] in first] + [t for t in tasks if t["id"] not in first]
    return TrialInputs(space=space, workload=workload, tasks=tasks, references=references,
                       examples=few_shot_examples(workload, wl_file),
                       scorer=resolve_scorer(workload.scorer, wl_file.parent, str(wl_file)), eval_ids=chosen)
