"""Experiment tracking. Only tracking/mlflow_tracker.py imports mlflow."""

from autotune.tracking.mlflow_tracker import MlflowTracker, latest_study_url, probe_store
from autotune.tracking.plots import latency_load_png, pareto_html, pareto_png
from autotune.tracking.study_figures import (
    HV_REFERENCE,
    hypervolume_curve,
    hypervolume_png,
    level_points,
    levels_png,
    parallel_html,
)
from autotune.tracking.traces import trial_traces
from autotune.tracking.views import interval, reproduce_command, study_note

__all__ = [
    "HV_REFERENCE", "MlflowTracker", "hypervolume_curve", "hypervolume_png", "interval", "latency_load_png",
    "latest_study_url", "level_points", "levels_png", "parallel_html", "pareto_html", "pareto_png", "probe_store",
    "reproduce_command", "study_note", "trial_traces",
]
