"""The measurement protocol: metrics from records, capacity levels, the evaluation set, comparisons with their noise,
the nightly's tests."""

from autotune.measure.compare import (
    QUALITY,
    Noise,
    Point,
    class_labels,
    compare_points,
    equivalence_classes,
    estimate,
    noise_model,
    paired_quality,
    quality_interval,
    survival,
)
from autotune.measure.eval_budget import costly_pass_warning, over_budget_warning
from autotune.measure.evalset import ItemScores, completion_config, eval_ids
from autotune.measure.levels import CapacityPrior, first_estimate, run_levels
from autotune.measure.regression import Comparison, Gate, Window, compare_arms, gates, power_warning
from autotune.measure.request_metrics import percentiles, summarize, usd_per_1k
from autotune.measure.task_metrics import breakdown_markdown, node_breakdown, summarize_tasks

__all__ = [
    "CapacityPrior", "Comparison", "Gate", "ItemScores", "Noise", "Point", "QUALITY", "Window", "breakdown_markdown",
    "class_labels", "compare_arms", "compare_points", "completion_config", "costly_pass_warning",
    "equivalence_classes", "estimate", "eval_ids", "first_estimate", "gates", "node_breakdown", "noise_model",
    "over_budget_warning", "paired_quality", "percentiles", "power_warning", "quality_interval", "run_levels",
    "summarize", "summarize_tasks", "survival", "usd_per_1k",
]
