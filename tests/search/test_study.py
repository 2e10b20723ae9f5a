"""The search loop end to end with a stand-in engine (tests/fake_engine.py), real Locust and real MLflow.

The real-engine path is covered by tests/e2e/test_engine_e2e.py; this one checks failure-as-data, resume, interrupted
trials and the MLflow layout quickly.
"""

from __future__ import annotations

import json
import math
import urllib.parse
from pathlib import Path

import optuna
import psutil
import pytest

from autotune.search.study import run_search
from tests.stand_in import NullReporter, _mlflow_runs, _study


def test_complete_trials_measured_and_tracked(setup):
    opts = setup("{choices: [2, 4]}", n_trials=2)
    summary = run_search(opts, NullReporter())
    assert summary.trials_complete == 2 and summary.trials_failed == 0
    trials = _study(opts).trials
    m = trials[0].user_attrs["metrics"]
    assert m["requests_ok"] > 0 and m["p95_ttft_ms"] > 0 and m["output_tokens_per_s"] > 0 and m["tasks_ok"] > 0
    assert m["quality"] == pytest.approx(1.0)  # the fake always answers correctly
    assert m["server_generation_tokens"] > 0 and m["server_ttft_mean_ms"] > 0
    assert summary.front and all(r["trial"] in (0, 1) for r in summary.front)
    client, runs = _mlflow_runs(opts)
    parent = [r for r in runs if r.data.tags.get("autotune.role") == "study"]
    children = [r for r in runs if r.data.tags.get("autotune.role") == "trial"]
    assert len(parent) == 1 and len(children) == 2
    for c in children:
        assert c.data.tags["mlflow.parentRunId"] == parent[0].info.run_id
        assert c.info.status == "FINISHED" and "max_num_seqs" in c.data.params
        assert c.data.metrics["p95_e2e_ms"] > 0 and "quality" in c.data.metrics
        assert c.data.metrics["quality_ci_low"] <= c.data.metrics["quality"] <= c.data.metrics["quality_ci_high"]
        assert c.data.tags["autotune.pareto"] in ("true", "false")
        arts = {a.path for a in client.list_artifacts(c.info.run_id)}
        assert {"requests.jsonl", "engine.log", "resolved-config.json", "metrics-deltas.json",
                "item_scores.jsonl"} <= arts
    assert any(c.data.tags["autotune.pareto"] == "true" for c in children)
    parent_arts = {a.path for a in client.list_artifacts(parent[0].info.run_id)}
    assert {"pareto.png", "pareto.html", "pareto_front.json", "pareto_front.md"} <= parent_arts
    front = json.loads(Path(client.download_artifacts(parent[0].info.run_id, "pareto_front.json")).read_text())
    assert {r["trial"] for r in front["front"]} == {r["trial"] for r in summary.front}
    note = parent[0].data.tags["mlflow.note.content"]  # the run's description: the final front, how to rerun it
    assert f"({len(summary.front)} member(s))" in note and "autotune search --space" in note
    assert all(r["mlflow_run_id"] in urllib.parse.unquote(summary.compare_url) for r in summary.front)
    assert parent[0].data.tags["autotune.compare_url"] == summary.compare_url


def test_failed_launches_are_data_and_budget_stops(setup):
    opts = setup("{choices: [13, 14]}", n_trials=10, max_failures=1, faults="13:unsupported,14:oom")
    reporter = NullReporter()
    summary = run_search(opts, reporter)
    assert summary.trials_complete == 0 and summary.trials_failed == 2
    assert "failure budget" in summary.stopped_because
    first = {}  # the first failure of each config is its real reason; repeats are `known_failure`
    for t in _study(opts).trials:  # (the batch's trials the budget stopped are interrupted and enqueued again)
        if t.state.is_finished() and not t.user_attrs.get("interrupted"):
            first.setdefault(t.params["max_num_seqs"], t.user_attrs["fail_reason"])
    assert first.get(13, "unsupported") == "unsupported" and first.get(14, "oom") == "oom" and first
    _, runs = _mlflow_runs(opts)
    children = [r for r in runs if r.data.tags.get("autotune.role") == "trial"]
    assert len(children) == 2 and all(c.info.status == "FAILED" for c in children)  # one run per failure
    assert all(c.data.tags["autotune.fail_reason"] in ("unsupported", "oom", "known_failure") for c in children)


def test_health_timeout_is_a_failed_trial(setup):
    opts = setup("{value: 15}", n_trials=1, max_failures=0, faults="15:hang")
    summary = run_search(opts, NullReporter())
    assert summary.trials_failed == 1
    assert _study(opts).trials[0].user_attrs["fail_reason"] == "health_timeout"
    assert not list((opts.run_dir / "engines").glob("*.json"))  # the hung engine was torn down


def test_rerun_resumes_without_losing_trials(setup):
    opts = setup("{choices: [2, 4]}", n_trials=1)
    run_search(opts, NullReporter())
    first = _study(opts).trials[0]
    opts.n_trials = 2
    summary = run_search(opts, NullReporter())
    trials = _study(opts).trials
    measured = [t for t in trials if t.user_attrs.get("duplicate_of") is None]
    assert summary.trials_complete == 2 and len(measured) == 2
    assert trials[0].values == first.values and trials[0].params == first.params
    for t in trials:  # a re-proposed config is told its measured values, never measured twice
        if t.user_attrs.get("duplicate_of") is not None:
            assert t.params == trials[t.user_attrs["duplicate_of"]].params and t.values is not None
            assert not (opts.run_dir / "s" / f"trial-{t.number:04d}").exists()


def test_trial_left_running_by_a_dead_tuner_is_rerun(setup):
    opts = setup("{choices: [2, 4]}", n_trials=1)
    opts.run_dir.mkdir(parents=True)
    storage = f"sqlite:///{(opts.run_dir / 'optuna.db').resolve()}"
    study = optuna.create_study(study_name="s", storage=storage, directions=["minimize", "minimize", "maximize"])
    ghost = study.ask({"max_num_seqs": optuna.distributions.CategoricalDistribution([2, 4])})
    ghost.set_user_attr("owner", {"host": __import__("socket").gethostname(), "pid": 999999, "create_time": 1.0})
    ghost_params = dict(ghost.params)
    run_search(opts, NullReporter())
    trials = _study(opts).trials
    assert trials[0].state.name == "FAIL" and trials[0].user_attrs["interrupted"] is True
    rerun = [t for t in trials if t.user_attrs.get("rerun_of") == 0]
    assert len(rerun) == 1 and rerun[0].state.name == "COMPLETE" and rerun[0].params == ghost_params
    assert not math.isnan(rerun[0].values[0])


def test_poisson_arrivals_and_journal_storage(setup, tmp_path):
    opts = setup("{value: 4}", n_trials=1, arrival="{mode: poisson, rate: 8}")
    opts.storage = f"journal:///{tmp_path / 'journal.log'}"
    summary = run_search(opts, NullReporter())
    assert summary.trials_complete == 1
    from autotune.stores import open_storage

    study = optuna.load_study(study_name="s", storage=open_storage(opts.storage))
    m = study.trials[0].user_attrs["metrics"]
    assert m["target_task_rate"] == 8 and m["schedule_lag_p95_ms"] >= 0
    # 2 s window at 8/s: Poisson count has sd ~4; the open loop must not be throttled by the (fast) server
    assert 3 <= m["achieved_rate_rps"] <= 16 and m["requests_ok"] >= 6


def test_client_knobs_reuse_the_engine_and_measure_per_format(setup):
    """Only client knobs change: one engine launch serves every trial; every format parses (the fake answers in
    the requested format); per-node breakdown and task metrics reach Optuna and MLflow."""
    client = ("  output_format: {choices: [json, yaml, xml, text, minimal]}\n"
              "              architecture: {choices: [one_call, parallel, sequential, judge]}")
    opts = setup("{value: 4}", n_trials=4, client=client)
    summary = run_search(opts, NullReporter())
    assert summary.trials_complete == 4
    trials = _study(opts).trials
    for t in trials:
        m = t.user_attrs["metrics"]
        assert m["validity_rate"] == 1.0 and m["quality"] == pytest.approx(1.0), t.params
        expected_calls = {"one_call": 1, "parallel": 3, "sequential": 3, "judge": 3}[t.params["architecture"]]
        assert m["fm_calls_per_task"] == expected_calls and m["tasks_ok"] > 0 and m["p95_task_ms"] > 0
    reused = [t.user_attrs["metrics"]["engine_reused"] for t in trials]
    assert reused == [0.0, 1.0, 1.0, 1.0]
    assert [t.user_attrs["metrics"]["startup_s"] > 0 for t in trials] == [True, False, False, False]
    client_, runs = _mlflow_runs(opts)
    parent = next(r for r in runs if r.data.tags.get("autotune.role") == "study")
    assert parent.data.metrics["engine_launches"] == 1 and parent.data.metrics["engine_reuses"] == 3
    child = next(r for r in runs if r.data.tags.get("autotune.role") == "trial")
    arts = {a.path for a in client_.list_artifacts(child.info.run_id)}
    assert {"node_breakdown.json", "node_breakdown.md", "tasks.jsonl", "engine.log"} <= arts
    assert child.data.tags["autotune.dominant_node"].startswith("call.")
    assert any(k.startswith("node.call.") for k in child.data.metrics)
    # categorical knobs also appear as numbers for the MLflow UI's parallel coordinates
    assert child.data.metrics["knob.output_format"] in (0, 1, 2, 3, 4) and "knob.architecture" in child.data.metrics


def test_unsupported_constraints_are_failed_trials_with_reason(setup):
    """json_schema with a non-JSON format is refused before any request; a constraint the server rejects
    (the fake refuses regex) is `unsupported` too, with the server's message."""
    client = ("  output_format: {choices: [yaml]}\n"
              "              constrained: {choices: [json_schema, regex]}")
    opts = setup("{value: 4}", n_trials=2, client=client, sampler="grid")
    summary = run_search(opts, NullReporter())
    assert summary.trials_failed == 2
    by = {t.params["constrained"]: t.user_attrs for t in _study(opts).trials}
    assert by["json_schema"]["fail_reason"] == "unsupported" and "needs output_format=json" in \
        by["json_schema"]["fail_message"]
    assert by["regex"]["fail_reason"] == "unsupported" and "HTTP 400" in by["regex"]["fail_message"]


def test_semantic_cache_inside_the_load_generator(setup):
    """The real MiniLM embedder runs inside Locust (gevent): repeats of the same article hit the shared cache."""
    client = ("  semantic_cache: {value: true}\n"
              "              cache_threshold: {value: 0.95}")
    opts = setup("{value: 4}", n_trials=1, client=client)
    summary = run_search(opts, NullReporter())
    assert summary.trials_complete == 1, _study(opts).trials[0].user_attrs
    m = _study(opts).trials[0].user_attrs["metrics"]
    assert m["cache_hit_rate"] > 0.5 and m["fm_calls_per_task"] < 0.5, m  # 5 identical articles, many tasks
    assert m["cache_false_hit_rate"] == 0 and m["quality"] == pytest.approx(1.0)
    assert m["cache_lookup_ms"] > 0 and m["cache_saved_ms_per_task"] > 0


@pytest.mark.parametrize("sampler", ["pymoo-nsga2", "gp", "nsga3"])
def test_search_runs_with_other_samplers(setup, sampler):
    opts = setup("{choices: [2, 4]}", n_trials=2, client="  output_format: {choices: [json, yaml]}",
                 sampler=sampler)
    summary = run_search(opts, NullReporter())
    assert summary.trials_complete == 2
    if sampler.startswith("pymoo"):
        assert [t.system_attrs["pymoo:index"] for t in _study(opts).trials] == [0, 1]


def test_mlflow_store_failure_mid_search_is_one_line_and_loses_no_trial(setup):
    """The artifact store breaks after the first trial: a one-line TrackingError, the trial is in Optuna, and
    no engine is left running."""
    import shutil

    from autotune.errors import TrackingError

    opts = setup("{choices: [2, 4]}", n_trials=3)

    class Breaker(NullReporter):
        def trial_finished(self, number, metrics, error):
            super().trial_finished(number, metrics, error)
            art = opts.run_dir / "mlartifacts"
            shutil.rmtree(art, ignore_errors=True)
            art.write_text("not a directory any more")

    with pytest.raises(TrackingError) as exc:
        run_search(opts, Breaker())
    assert "MLflow store" in str(exc.value) and "\n" not in str(exc.value)
    trials = _study(opts).trials  # (asked as one batch, run in server-part order: any one of them ran first)
    assert sum(t.state.name == "COMPLETE" for t in trials) == 1
    assert not list((opts.run_dir / "engines").glob("*.json"))


def test_multi_fidelity_screens_out_hopeless_configs(setup):
    """A short screening window first: the slow config (max_num_seqs 1, the fake's `slow` fault: 10x slower) is
    dominated by the front even with the margin, so it never gets the full window; the other one does."""
    opts = setup("{choices: [4, 1]}", n_trials=2, faults="1:slow")
    text = opts.space_file.read_text().replace(
        "search: {", "search: {screening_s: 0.8, screening_margin: 0.1, enqueue: [{max_num_seqs: 4}, "
                     "{max_num_seqs: 1}], ").replace(
        "constraints:", "objectives: [{metric: p95_task_ms, direction: minimize}, "
                        "{metric: usd_per_1k_tasks, direction: minimize}]\nconstraints:")
    opts.space_file.write_text(text)
    opts.confirm = 1  # also audits the screened-out config once at full fidelity
    summary = run_search(opts, NullReporter())
    assert summary.trials_complete == 2
    t0, t1 = _study(opts).trials
    assert t0.params["max_num_seqs"] == 4 and t0.user_attrs["fidelity"] == "full"
    assert "screen_metrics" in t0.user_attrs and t0.user_attrs["metrics"]["fidelity_s"] == 2
    assert t1.user_attrs["fidelity"] == "screen" and t1.user_attrs["metrics"]["fidelity_s"] == 0.8
    assert {r["trial"] for r in summary.front} == {0}
    assert (opts.run_dir / "s" / "trial-0001" / "screen").is_dir()
    assert not (opts.run_dir / "s" / "trial-0001" / "tasks.jsonl").exists(), "no full window for trial 1"
    assert t1.state == optuna.trial.TrialState.PRUNED and t1.values is None, "the sampler never sees short values"
    from autotune.ops.export import export_bundle

    # `max p95_task_ms` would pick the slow, screened trial if it were a candidate (its files are under screen/)
    bundle, chosen, _ = export_bundle(_study(opts), "max p95_task_ms", opts.run_dir / "exports")
    assert chosen.number == 0 and json.loads((bundle / "bundle.json").read_text())["trial"] == 0
    from autotune.config.space import load_space
    from autotune.search.confirm import screening_summary

    screen = screening_summary(_study(opts), load_space(opts.space_file, check_paths=False))
    assert screen["screened_out"] == 1 and screen["audited"] == 1 and screen["would_reach_front"] == []
    assert (opts.run_dir / "s" / "trial-0001" / "audit" / "tasks.jsonl").is_file()


def test_screening_margin_is_calibrated_from_screen_and_full_pairs():
    from autotune.config.space import Objective
    from autotune.search.screening import MIN_PAIRS, margins

    class Space:
        objectives = [Objective(metric="p95_task_ms", direction="minimize")]

    study = optuna.create_study(directions=["minimize"])
    ratios = [1.1, 0.9, 1.2, 1.0]
    for i, r in enumerate(ratios):
        assert (margins(study, Space) is None) == (i < MIN_PAIRS), "calibration: every trial is measured fully"
        t = study.ask()
        t.set_user_attr("fidelity", "full")
        t.set_user_attr("metrics", {"p95_task_ms": 1000.0})
        t.set_user_attr("screen_metrics", {"p95_task_ms": 1000.0 * r})
        study.tell(t, [1000.0])
    logs = [math.log(r) for r in ratios]
    mean = sum(logs) / 4
    sd = math.sqrt(sum((x - mean) ** 2 for x in logs) / 3)
    from scipy.stats import t as student

    expected = math.expm1(abs(mean) + student.ppf(0.95, 3) * sd * math.sqrt(1 + 1 / 4))
    assert margins(study, Space) == [pytest.approx(expected)]


def test_a_re_proposed_config_is_told_not_measured_and_a_covered_space_stops(setup):
    """One config in the space: the sampler can only re-propose it. Each re-proposal is told its measured
    values without a measurement; after three in a row no unmeasured config exists and the search says so."""
    opts = setup("{choices: [4]}", n_trials=3)
    summary = run_search(opts, NullReporter())
    trials = _study(opts).trials
    assert summary.trials_complete == 1 and "every config the space allows is measured" in summary.stopped_because
    repeats = [t for t in trials if t.user_attrs.get("duplicate_of") == 0]
    assert len(repeats) == 3 and all(t.values == trials[0].values for t in repeats)
    assert len(summary.front) == 1 and summary.front[0]["trials"] == [0]


def test_confirm_remeasures_the_front_on_fresh_engines_without_the_selecting_window(setup):
    from autotune.config.space import load_space
    from autotune.search.confirm import survival_summary
    from autotune.search.front import front_rows

    opts = setup("{choices: [2, 4]}", n_trials=2)
    opts.confirm = 2
    summary = run_search(opts, NullReporter())
    study = _study(opts)
    before = study.user_attrs["confirm_front"]
    store = study.user_attrs["confirm"]
    assert set(store) == set(before) and summary.front
    for windows in store.values():
        assert [w["round"] for w in windows] == [0, 1] and all(w["metrics"]["p95_task_ms"] > 0 for w in windows)
        assert all(w["items"] for w in windows)  # quality re-graded on the evaluation set
    fresh = {}
    for windows in store.values():
        for w in windows:
            fresh.setdefault(w["round"], []).append(w["fresh_engine"])
    assert all(any(v) for v in fresh.values()), "every round starts on a freshly launched engine"
    space = load_space(opts.space_file, check_paths=False)
    rows, front = front_rows(study, space, judge=True)
    for r in rows:
        if r["config_key"] in store:  # estimated from its 2 confirmation windows, the selecting one excluded
            assert r["confirmed"] and r["windows"] == 2
            mean = sum(w["metrics"]["p95_task_ms"] for w in store[r["config_key"]]) / 2
            assert r["p95_task_ms"] == pytest.approx(mean, rel=0.05)  # geometric vs arithmetic mean of 2
            assert r["p95_task_ms_low"] <= r["p95_task_ms"] <= r["p95_task_ms_high"]
    assert all(r["class"] for r in front)
    surv = survival_summary(study, space)
    assert len(surv["kept"]) + len(surv["dropped"]) == len(before)
    client, runs = _mlflow_runs(opts)
    confirmed = [r for r in runs if "confirm.p95_task_ms" in r.data.metrics]
    assert len(confirmed) == len(before)
    history = client.get_metric_history(confirmed[0].info.run_id, "confirm.p95_task_ms")
    assert [m.step for m in history] == [1, 2]


def test_batches_run_equal_server_parts_back_to_back(setup):
    """Random proposals alternate server parts; asked in a batch of 4 they are regrouped so only one relaunch
    happens per distinct server part in the batch."""
    client = "  output_format: {choices: [json, yaml, minimal]}"
    opts = setup("{choices: [2, 4]}", n_trials=4, client=client)
    opts.space_file.write_text(opts.space_file.read_text().replace("batch: 1", "batch: 4"))
    run_search(opts, NullReporter())
    trials = [t for t in _study(opts).trials if t.user_attrs.get("duplicate_of") is None]  # measured ones
    first = [t for t in trials if t.number < 4]  # the first batch
    order = [t.params["max_num_seqs"] for t in sorted(first, key=lambda t: t.datetime_complete)]
    switches = sum(1 for a, b in zip(order, order[1:], strict=False) if a != b)
    assert switches <= 1, order
    reused = sum(t.user_attrs["metrics"]["engine_reused"] for t in first)
    assert reused == len(first) - len(set(order))


def test_a_parked_engine_is_thawed_when_its_server_part_comes_back(setup):
    """engine.park 1: leaving server part A freezes its engine instead of stopping it, and A's next trial thaws
    it (a reuse, no launch); nothing frozen outlives the search."""
    opts = setup("{choices: [2, 4]}", n_trials=3, client="  output_format: {choices: [json, yaml]}")
    text = opts.space_file.read_text().replace("  shutdown_timeout_s: 3\n", "  shutdown_timeout_s: 3\n  park: 1\n")
    opts.space_file.write_text(text.replace("search: {", "search: {enqueue: [{max_num_seqs: 2, output_format: json}, "
                                            "{max_num_seqs: 4, output_format: json}, "
                                            "{max_num_seqs: 2, output_format: yaml}], "))
    run_search(opts, NullReporter())
    trials = _study(opts).trials
    assert [t.state.name for t in trials] == ["COMPLETE"] * 3
    assert [t.user_attrs["metrics"]["engine_reused"] for t in trials] == [0.0, 0.0, 1.0]
    client, runs = _mlflow_runs(opts)
    [parent] = [r for r in runs if r.data.tags.get("autotune.role") == "study"]
    assert parent.data.metrics["engine_launches"] == 2 and parent.data.metrics["engine_thaws"] == 1
    assert not list((opts.run_dir / "engines").glob("*.json"))
    assert not psutil.Process().children(recursive=True)


def test_distributed_load_generation(setup, tmp_path):
    """processes: 2 runs Locust's distributed mode (master + 2 workers): both workers' tasks are merged, task
    numbers stay unique, and the summary adds up their CPU."""
    opts = setup("{value: 4}", n_trials=1, arrival="{mode: closed, users: 4}")
    wl = tmp_path / "wl.yaml"
    wl.write_text(wl.read_text() + "processes: 2\n")
    summary = run_search(opts, NullReporter())
    assert summary.trials_complete == 1
    load_dir = opts.run_dir / "s" / "trial-0000" / "load"
    assert {p.name for p in load_dir.glob("tasks-*.jsonl")} == {"tasks-0.jsonl", "tasks-1.jsonl"}
    tasks = [json.loads(x) for x in (opts.run_dir / "s" / "trial-0000" / "tasks.jsonl").read_text().splitlines()]
    assert len({t["n"] for t in tasks}) == len(tasks) and {t["n"] % 2 for t in tasks} == {0, 1}
    m = _study(opts).trials[0].user_attrs["metrics"]
    assert m["tasks_ok"] > 0 and m["quality"] == 1.0 and m["server_generation_tokens"] > 0


def test_a_failed_engine_config_is_not_launched_again(setup):
    """Random keeps proposing max_num_seqs 13 (unsupported): it is launched once; re-proposals are recorded as
    `known_failure` without starting an engine, and count neither as trials nor against the failure budget (it
    is the same failure). With every config measured or failed, the search stops instead of looping."""
    opts = setup("{choices: [13, 4]}", n_trials=6, max_failures=1, faults="13:unsupported")
    summary = run_search(opts, NullReporter())
    trials = [t for t in _study(opts).trials if t.params["max_num_seqs"] == 13]
    reasons = [t.user_attrs.get("fail_reason") for t in trials]
    assert reasons.count("unsupported") == 1 and set(reasons) <= {"unsupported", "known_failure"}
    assert len(trials) >= 2, "random with seed 0 proposes 13 more than once"
    assert all(t.user_attrs["duplicate_of"] == trials[0].number for t in trials[1:])
    assert not (opts.run_dir / "s" / f"trial-{trials[-1].number:04d}" / "engine.log").exists()
    assert summary.trials_complete == 1 and summary.trials_failed == 1
    assert "failed for its own reasons" in summary.stopped_because


def test_work_in_flight_at_the_drain_end_is_abandoned_not_dropped(setup):
    """Open loop on an engine that leaves every 4th request hanging: tasks of the window still in flight when the
    drain ends are failures with their elapsed time, load keeps being offered (cooldown) until then, and the
    schedule's lag is recorded next to the target rate in tasks/s."""
    opts = setup("{value: 12}", n_trials=1, arrival="{mode: poisson, rate: 6}", faults="12:stuck")
    wl = opts.space_file.parent / "wl.yaml"
    wl.write_text(wl.read_text().replace("drain_timeout_s: 5", "drain_timeout_s: 1.5"))
    run_search(opts, NullReporter())
    trial = _study(opts).trials[0]
    tasks = [json.loads(line) for line in (opts.run_dir / "s" / "trial-0000" / "load" / "tasks.jsonl").open()]
    abandoned = [t for t in tasks if t.get("abandoned")]
    assert abandoned and all(t["phase"] == "measure" and not t["ok"] for t in abandoned)
    assert all(t["latency_s"] >= 1.5 for t in abandoned), "their latency is the time they waited, at least the drain"
    assert any(t["phase"] == "cooldown" for t in tasks), "load is offered after the window while its tasks run"
    assert trial.state.name == "COMPLETE"  # measured (infeasible: the constraint on errors fails), not dropped
    m = trial.user_attrs["metrics"]
    assert m["abandoned_tasks"] == len(abandoned) and m["task_error_rate"] > 0
    assert m["target_task_rate"] == 6 and m["achieved_task_rate"] > 0 and m["schedule_lag_p95_ms"] >= 0


def test_the_load_ignores_locust_settings_of_the_working_directory(setup, tmp_path, monkeypatch):
    """Locust reads locust.conf and pyproject.toml from its working directory: a user's (here a half-edited,
    unparsable pyproject and a locust.conf asking for 50 users) must neither break nor change the load."""
    opts = setup("{value: 4}", n_trials=1)
    project = tmp_path / "project"
    project.mkdir()
    (project / "pyproject.toml").write_text('[project]\ndependencies = [\n  "a"\n  "b",\n]\n')
    (project / "locust.conf").write_text("users = 50\nspawn-rate = 50\n")
    monkeypatch.chdir(project)
    summary = run_search(opts, NullReporter())
    assert summary.trials_complete == 1
    cfg = json.loads((opts.run_dir / "s" / "trial-0000" / "load" / "load-config.json").read_text())
    assert cfg["load_users"] == 2  # (without its own working directory Locust exits: "Couldn't parse TOML file")
