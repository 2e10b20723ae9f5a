"""What a user sees in MLflow: the experiment kind, the parent's description kept current, links, level history."""

from __future__ import annotations

import json
import time
import urllib.parse
from pathlib import Path

import pytest

from autotune.tracking.mlflow_tracker import COMPARE, EXPERIMENT_KIND, KIND_RUNS, MlflowTracker, latest_study_url
from autotune.tracking.views import compare_url, level_history, reproduce_command, runs_table_url, study_note

OBJECTIVES = [("p95_task_ms", "minimize"), ("quality", "maximize")]
CONTEXT = {"study": "s", "sla": {"task_ms": 4000.0, "ttft_ms": None, "attainment": 0.95}, "objectives": OBJECTIVES,
           "constraints": [{"metric": "error_rate", "op": "<=", "value": 0.01}], "command": "autotune search --x y"}


def _row(trial: int, p95: float, quality: float, run_id: str, **extra) -> dict:
    return {"trial": trial, "windows": 2, "p95_task_ms": p95, "quality": quality, "mlflow_run_id": run_id,
            "max_num_seqs": 4, "pareto": True, **extra}


def test_note_shows_front_intervals_sla_objectives_constraints_and_command():
    note = study_note([_row(3, 812.0, 0.61, "r3", p95_task_ms_low=700.0, p95_task_ms_high=900.0,
                            quality_ci_low=0.5, quality_ci_high=0.7)], CONTEXT, ["max_num_seqs", "absent_knob"])
    assert "812 [700, 900]" in note and "0.61 [0.5, 0.7]" in note  # value [low, high]
    assert "p95_task_ms (↓)" in note and "quality (↑)" in note and "max_num_seqs" in note
    assert "absent_knob" not in note and "r3" not in note  # knobs no row has; run ids stay out of the table
    assert "Shared by every member: max_num_seqs = 4" in note  # a knob all members share is not a column
    two = study_note([_row(0, 9.0, 0.5, "a"), _row(1, 5.0, 0.4, "b", max_num_seqs=8)], CONTEXT, ["max_num_seqs"])
    assert "| class | max_num_seqs |" in two and "Shared by every member" not in two
    assert "task_ms = 4000" in note and "attainment = 0.95" in note and "ttft_ms" not in note  # unset: not shown
    assert "error_rate <= 0.01" in note and "autotune search --x y" in note
    assert "No feasible trial yet" in study_note([], CONTEXT, [])


def test_compare_url_is_the_route_mlflow_ui_builds():
    url = compare_url("7", ["b", "a"])
    assert url.startswith("#/compare-runs?")
    query = urllib.parse.parse_qs(url.split("?", 1)[1])
    assert json.loads(query["runs"][0]) == ["a", "b"] and json.loads(query["experiments"][0]) == ["7"]


def test_reproduce_command_leaves_out_unset_options_and_scrubs_store_passwords():
    cmd = reproduce_command({"--space": Path("a b.yaml"), "--seed": 0, "--storage": "postgresql://u:hunter2@h/db",
                             "--workload": None})
    assert cmd.startswith("autotune search --space 'a b.yaml' --seed 0 --storage ")
    assert "hunter2" not in cmd and "--workload" not in cmd


def test_a_long_front_fits_mlflows_tag_limit_and_keeps_sla_and_command():
    knobs = [f"knob_{i:02d}" for i in range(20)]
    front = [_row(i, 100.0 + i, 0.5, f"r{i}", **{k: f"value-{i}-{k}" for k in knobs}) for i in range(60)]
    note = study_note(front, CONTEXT, knobs)
    assert len(note) <= 8000 and "(60 member(s))" in note and "more member(s)" in note
    assert "## SLA, objectives, constraints" in note and "autotune search --x y" in note


def test_level_history_steps_follow_the_offered_rate():
    levels = [{"rate": 2.0, "attainment": 0.9, "p95_task_ms": 900.0, "passed": False, "tasks_per_s": 1.8},
              {"rate": 1.0, "attainment": 1.0, "p95_task_ms": 500.0, "passed": True, "tasks_per_s": 1.0},
              {"rate": 1.5, "attainment": float("nan"), "p95_task_ms": 700.0, "passed": True}]
    hist = {(name, step): v for name, v, step in level_history(levels)}
    assert hist[("level.rate", 1000)] == 1.0 and hist[("level.rate", 1500)] == 1.5 and hist[("level.rate", 2000)] == 2.0
    assert hist[("level.p95_task_ms", 2000)] == 900.0 and hist[("level.tasks_per_s", 2000)] == 1.8
    assert ("level.attainment", 1500) not in hist  # NaN is not a point


@pytest.fixture
def store(tmp_path):
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


def test_experiment_opens_on_the_runs_table_new_and_reopened(store, tmp_path):
    from mlflow import MlflowClient

    client = MlflowClient(store)
    old = client.create_experiment("old")  # made by an earlier version: no kind tag
    assert EXPERIMENT_KIND not in client.get_experiment(old).tags
    trackers = {}
    for name in ("new", "old"):
        trackers[name] = MlflowTracker(store, name, artifact_root=tmp_path / "art")
        assert client.get_experiment(trackers[name].experiment_id).tags[EXPERIMENT_KIND] == KIND_RUNS
    assert latest_study_url(store) == ""  # no trial yet
    trackers["new"].start_trial(0, {})
    assert latest_study_url(store) == runs_table_url(trackers["new"].experiment_id)
    time.sleep(0.01)  # start times are in milliseconds
    trackers["old"].start_trial(0, {})  # the older study resumed: its trial is the newest
    assert latest_study_url(store) == runs_table_url(trackers["old"].experiment_id)
    assert "/runs?searchFilter=" in latest_study_url(store)
    assert latest_study_url(f"sqlite:///{tmp_path / 'absent.db'}") == ""
    assert not (tmp_path / "absent.db").exists()


def test_description_and_compare_link_follow_the_front(store, tmp_path):
    tracker = MlflowTracker(store, "s", artifact_root=tmp_path / "art")
    first = [_row(0, 900.0, 0.5, "r0")]
    tracker.log_front(first, {}, {"front_size": 1.0}, note=study_note(first, CONTEXT, ["max_num_seqs"]))
    tags = tracker.client.get_run(tracker.parent_id).data.tags
    assert "| 0 | 2 | 900 |" in tags["mlflow.note.content"] and '["r0"]' in urllib.parse.unquote(tags[COMPARE])
    moved = [_row(0, 900.0, 0.5, "r0"), _row(4, 400.0, 0.4, "r4")]
    tracker.log_front(moved, {}, {"front_size": 2.0}, note=study_note(moved, CONTEXT, ["max_num_seqs"]))
    tags = tracker.client.get_run(tracker.parent_id).data.tags
    assert "| 4 | 2 | 400 |" in tags["mlflow.note.content"] and "(2 member(s))" in tags["mlflow.note.content"]
    assert '["r0", "r4"]' in urllib.parse.unquote(tags[COMPARE])


def test_levels_are_metric_history_of_the_trial_run(store, tmp_path):
    tracker = MlflowTracker(store, "s", artifact_root=tmp_path / "art")
    run_id = tracker.start_trial(0, {"max_num_seqs": 4})
    levels = [{"rate": 1.0, "attainment": 1.0, "p95_task_ms": 500.0, "passed": True},
              {"rate": 3.0, "attainment": 0.5, "p95_task_ms": 3000.0, "passed": False}]
    tracker.finish_trial(run_id, {"capacity_tps": 1.0}, {}, {}, tables={"capacity_levels.json": levels})
    history = tracker.client.get_metric_history(run_id, "level.p95_task_ms")
    assert sorted((m.step, m.value) for m in history) == [(1000, 500.0), (3000, 3000.0)]


def test_a_finished_trial_run_is_named_with_its_objective_values(store, tmp_path):
    tracker = MlflowTracker(store, "s", artifact_root=tmp_path / "art")
    tracker.objectives = OBJECTIVES
    done, failed = tracker.start_trial(0, {}), tracker.start_trial(1, {})
    tracker.finish_trial(done, {"p95_task_ms": 812.4, "quality": 0.6123}, {}, {})
    tracker.finish_trial(failed, {}, {}, {"autotune.state": "failed"}, failed=True)
    assert tracker.client.get_run(done).info.run_name == "trial-000 · p95_task_ms 812 · quality 0.612"
    assert tracker.client.get_run(failed).info.run_name == "trial-001"
    screened = tracker.start_trial(2, {})
    tracker.finish_trial(screened, {"p95_task_ms": 90.0, "quality": 0.5}, {}, {"autotune.fidelity": "screen"})
    assert tracker.client.get_run(screened).info.run_name.startswith("trial-002 · (screen) · p95_task_ms 90")
