"""Quality on one fixed evaluation set: same items for every trial, each once, failures 0, completed when the
measured load did not reach an item; paired comparisons between windows of one config."""

from __future__ import annotations

import json

from autotune.measure.compare import paired_quality
from autotune.measure.evalset import ItemScores, completion_config, eval_ids
from autotune.search.study import run_search
from tests.stand_in import NullReporter, _study


def test_eval_ids_are_a_seeded_subset_in_dataset_order():
    ids = [f"i{i}" for i in range(50)]
    a, b = eval_ids(ids, 10, seed=3), eval_ids(ids, 10, seed=3)
    assert a == b and len(a) == 10 and a == sorted(a, key=ids.index)
    assert eval_ids(ids, 10, seed=4) != a
    assert eval_ids(ids, None, seed=3) == ids and eval_ids(ids, 500, seed=3) == ids


def test_first_attempt_counts_failures_score_zero_cooldown_ignored(tmp_path):
    graded = ItemScores(["a", "b", "c", "d"])
    graded.take([
        {"id": "a", "phase": "measure", "ok": True, "score": 0.5, "send_ts": 2.0},
        {"id": "a", "phase": "warmup", "ok": True, "score": 1.0, "send_ts": 1.0},  # earlier: this one counts
        {"id": "b", "phase": "measure", "ok": False, "abandoned": True, "send_ts": 3.0},  # failure: 0
        {"id": "c", "phase": "cooldown", "ok": True, "score": 1.0, "send_ts": 4.0},  # not at the measured load
        {"id": "zz", "phase": "measure", "ok": True, "score": 1.0, "send_ts": 0.5},  # not in the set
    ], "window")
    assert graded.scores == {"a": 1.0, "b": 0.0} and graded.failed == {"b"} and graded.missing == ["c", "d"]
    graded.take([{"id": "c", "phase": "measure", "ok": True, "score": 1.0, "send_ts": 9.0},
                 {"id": "d", "phase": "measure", "ok": True, "score": 0.25, "send_ts": 9.5}], "completion",
                phases=("measure",))
    assert graded.missing == [] and graded.mean() == (1.0 + 0.0 + 1.0 + 0.25) / 4
    lines = [json.loads(x) for x in graded.write(tmp_path / "item_scores.jsonl").read_text().splitlines()]
    assert [x["id"] for x in lines] == ["a", "b", "c", "d"]
    assert [x["source"] for x in lines] == ["window", "window", "completion", "completion"]
    assert lines[1] == {"id": "b", "score": 0.0, "ok": False, "source": "window"}


def test_completion_config_runs_each_missing_item_once(tmp_path):
    from autotune.loadgen.load_config import LoadConfig

    tasks = [{"id": f"i{i}"} for i in range(10)]
    base = LoadConfig(tasks=tasks, app={}, seed=0, processes=3)
    cfg = completion_config(base, tasks, ["i7", "i2"], users=4, request_timeout_s=60, out_dir=tmp_path)
    assert cfg.once and cfg.processes == 1 and [t["id"] for t in cfg.tasks] == ["i7", "i2"]
    assert (cfg.arrival.mode, cfg.arrival.users) == ("closed", 2) and cfg.warmup_s == 0


def test_every_window_of_a_config_is_graded_on_the_same_items(setup, tmp_path):
    """A real (fake-engine) study with `eval_items: 6` of 30 tasks: the trial and its two confirmation windows
    grade exactly the same 6 items, each once, and their paired difference interval holds 0."""
    items = tmp_path / "items.jsonl"
    row = json.loads(items.read_text().splitlines()[0])
    items.write_text("".join(json.dumps({**row, "id": f"i{i}"}) + "\n" for i in range(30)))
    opts = setup("{value: 4}", n_trials=1)
    wl = tmp_path / "wl.yaml"
    wl.write_text(wl.read_text() + "eval_items: 6\nseed: 5\n")
    opts.confirm = 2
    run_search(opts, NullReporter())
    study = _study(opts)
    trial = study.trials[0]
    expected = eval_ids([f"i{i}" for i in range(30)], 6, seed=5)
    lines = [json.loads(x) for x in (opts.run_dir / "s" / "trial-0000" / "item_scores.jsonl").read_text().splitlines()]
    assert [x["id"] for x in lines] == expected and all(x["score"] is not None for x in lines)
    m = trial.user_attrs["metrics"]
    assert m["eval_items"] == 6 and m["eval_missing_items"] == 0
    assert m["quality_ci_low"] <= m["quality"] <= m["quality_ci_high"]
    windows = [trial.user_attrs["item_scores"], *[w["items"] for w in study.user_attrs["confirm"][
        trial.user_attrs["config_key"]]]]
    assert all(sorted(w) == sorted(expected) for w in windows)
    diff = paired_quality(windows[0], windows[1])
    assert diff.n == 6 and diff.low <= 0 <= diff.high


def test_items_the_window_did_not_reach_are_completed_once(setup, tmp_path):
    """A 0.3 s window with one user reaches a few of 30 items; the completion pass runs the rest, each once."""
    items = tmp_path / "items.jsonl"
    row = json.loads(items.read_text().splitlines()[0])
    items.write_text("".join(json.dumps({**row, "id": f"i{i}"}) + "\n" for i in range(30)))
    opts = setup("{value: 4}", n_trials=1, arrival="{mode: closed, users: 1}")
    wl = tmp_path / "wl.yaml"
    wl.write_text(wl.read_text().replace("duration_s: 2", "duration_s: 0.3").replace("warmup_s: 0.5", "warmup_s: 0"))
    run_search(opts, NullReporter())
    m = _study(opts).trials[0].user_attrs["metrics"]
    lines = [json.loads(x) for x in (opts.run_dir / "s" / "trial-0000" / "item_scores.jsonl").read_text().splitlines()]
    sources = [x["source"] for x in lines]
    assert len(lines) == 30 and set(sources) == {"window", "completion"}, sources
    assert m["eval_completion_items"] == sources.count("completion") and m["eval_completion_s"] > 0
    done = [json.loads(x) for x in (opts.run_dir / "s" / "trial-0000" / "eval" / "tasks.jsonl").read_text()
            .splitlines()]
    assert sorted(t["id"] for t in done) == sorted(x["id"] for x in lines if x["source"] == "completion")


def test_a_level_over_the_sla_lends_its_answered_attempts_never_its_misses():
    """A capacity level that failed the SLA: its answered attempts grade items no held level reached (the answer
    does not depend on the load at temperature 0); its misses are the overload's and leave the item to the
    completion pass. An attempt at a held level still wins, failure or not."""
    graded = ItemScores(["a", "b", "c"])
    graded.take([{"id": "a", "phase": "measure", "ok": False, "send_ts": 1.0}], "level-00")
    graded.take([{"id": "a", "phase": "measure", "ok": True, "score": 1.0, "send_ts": 5.0},
                 {"id": "b", "phase": "measure", "ok": True, "score": 0.5, "send_ts": 6.0},
                 {"id": "c", "phase": "measure", "ok": False, "abandoned": True, "send_ts": 7.0}], "level-01",
                answered_only=True)
    assert graded.scores == {"a": 0.0, "b": 0.5} and graded.missing == ["c"]
    assert graded.sources == {"a": "level-00", "b": "level-01"} and graded.failed == {"a"}


def test_the_load_config_refuses_an_unknown_key_on_read(tmp_path):
    import pytest
    from pydantic import ValidationError

    from autotune.loadgen.load_config import LoadConfig, read_load_config

    path = tmp_path / "load-config.json"
    cfg = LoadConfig(tasks=[{"id": "a"}], app={})
    path.write_text(cfg.model_dump_json())
    assert read_load_config(path) == cfg
    path.write_text(cfg.model_dump_json()[:-1] + ', "duraton_s": 5}')  # a misspelt key
    with pytest.raises(ValidationError, match="duraton_s"):
        read_load_config(path)
    with pytest.raises(ValidationError, match="level"):
        cfg.with_(level={"target": 0.95, "confidence": 0.9, "min_tasks": 5, "sla": {}, "bogus": 1})


def test_the_default_evaluation_set_is_bounded_and_all_is_explicit(tmp_path):
    from autotune.config.workload import WorkloadConfig

    base = {"name": "w", "dataset": "d.jsonl", "fields": [{"name": "x", "question": "X?"}],
            "prompt": {"context": "{a}", "task": "X?"}}
    assert WorkloadConfig.model_validate(base).eval_items == 40
    assert WorkloadConfig.model_validate({**base, "eval_items": "all"}).eval_items == "all"
    ids = [f"i{i}" for i in range(200)]
    assert len(eval_ids(ids, WorkloadConfig.model_validate(base).eval_items, seed=0)) == 40


def test_more_items_than_the_load_reaches_warns_with_the_numbers():
    from autotune.config.workload import WorkloadConfig
    from autotune.measure.eval_budget import costly_pass_warning, over_budget_warning, reachable_items

    base = {"name": "w", "dataset": "d.jsonl", "fields": [{"name": "x", "question": "X?"}],
            "prompt": {"context": "{a}", "task": "X?"}, "load_protocol": "capacity",
            "capacity": {"start_rate": 0.5, "max_levels": 3, "level_s": 20, "warmup_s": 0}}
    wl = WorkloadConfig.model_validate(base)
    assert reachable_items(wl) == 70  # 0.5, 1 and 2 tasks/s for 20 s each
    assert over_budget_warning(wl, 70) is None
    assert "holds 200 items" in over_budget_warning(wl, 200) and "at most 70" in over_budget_warning(wl, 200)
    closed = WorkloadConfig.model_validate({k: v for k, v in base.items() if k != "load_protocol"})
    assert reachable_items(closed) is None and over_budget_warning(closed, 10_000) is None  # depends on the engine
    assert costly_pass_warning({"eval_completion_s": 20, "trial_wall_s": 100}) is None
    text = costly_pass_warning({"eval_completion_s": 60, "trial_wall_s": 100, "eval_completion_items": 150,
                                "eval_items": 200})
    assert "60%" in text and "150 of 200" in text


def test_a_warning_is_shown_once_per_search():
    import io

    from rich.console import Console

    from autotune.progress import RichReporter

    out = io.StringIO()
    reporter = RichReporter(Console(file=out, width=200))
    for _ in range(3):
        reporter.warn("eval_cost", "grading quality cost a lot")
    reporter.warn("eval_budget", "too many items")
    assert out.getvalue().count("grading quality cost a lot") == 1 and "too many items" in out.getvalue()
