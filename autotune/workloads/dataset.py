"""Dataset items -> the tasks the load generator runs (rendered prompts), with near-duplicate traffic.

A task is {id, context, task, questions: {field: question}}; references stay here (the load generator never
sees them). With `duplicates.share` > 0 that share of items is sent twice: once as is and once paraphrased
(same reference, different wording), so a semantic cache has real repeats to find - and real look-alikes
(same template, another person) to get wrong.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from autotune.config import WorkloadConfig, read_items, templates

PREFIXES = ["Reposted: ", "From the archive: ", "Update: ", "Reader mail: ", "In brief: "]


def read_dataset(workload: WorkloadConfig, path: Path) -> list[dict[str, Any]]:
    """A dataset's items, every line checked (see config.dataset)."""
    return read_items(path, templates(workload))


def render_task(workload: WorkloadConfig, item: dict[str, Any]) -> dict[str, Any]:
    inputs = item["input"]
    return {
        "id": item["id"],
        "context": workload.prompt.context.format(**inputs),
        "task": workload.prompt.task.format(**inputs),
        "questions": {f.name: f.question.format(**inputs) for f in workload.fields},
    }


def paraphrase(text: str, rng: random.Random) -> str:
    """A meaning-preserving rewording: a lead-in phrase and, for longer texts, the last sentence moved up."""
    head, sep, body = text.partition(": ")
    if not sep or len(head) >= 20:  # no short "Article: " label to keep in front
        head, sep, body = "", "", text
    sentences = [s.strip() for s in body.split(". ") if s.strip()]
    if len(sentences) > 2 and rng.random() < 0.5:
        body = ". ".join([sentences[-1].rstrip("."), *sentences[:-1]])
        body = body if body.endswith(".") else body + "."
    return f"{head}{sep}{rng.choice(PREFIXES)}{body}"


def render_tasks(workload: WorkloadConfig, items: list[dict[str, Any]]) -> tuple[list[dict], dict[str, dict]]:
    """(tasks, references by task id), paraphrased duplicates included."""
    tasks, refs = [], {}
    rng = random.Random(workload.duplicates.seed)
    for it in items:
        task = render_task(workload, it)
        tasks.append(task)
        refs[task["id"]] = it["reference"]
        if workload.duplicates.share and rng.random() < workload.duplicates.share:
            dup = {**task, "id": f"{task['id']}~p", "context": paraphrase(task["context"], rng)}
            tasks.append(dup)
            refs[dup["id"]] = it["reference"]
    return tasks, refs


def few_shot_examples(workload: WorkloadConfig, workload_file: Path) -> list[dict[str, Any]]:
    path = workload.few_shot_path(workload_file)
    if path is None:
        return []
    items = read_dataset(workload, path)[:workload.few_shot_n]
    return [{**render_task(workload, it), "answer": it["reference"]} for it in items]
