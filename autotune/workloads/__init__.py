"""Shipped tasks: deterministic dataset generators and their quality scorers; rendering a dataset into tasks."""

from autotune.workloads.dataset import few_shot_examples, read_dataset, render_tasks

__all__ = [
    "few_shot_examples", "read_dataset", "render_tasks",
]
