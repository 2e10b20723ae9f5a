"""Experiment tracking. Only tracking/mlflow_tracker.py imports mlflow."""
