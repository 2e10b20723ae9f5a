"""Task traces in MLflow: the sample (p95 tail + typical), the span tree of each architecture against a fake chat
with known timings, read back from a real sqlite store, and the study logging them for every trial."""

from __future__ import annotations

import itertools
import json
import time

import pytest
from mlflow import MlflowClient

from autotune.fmware.runner import run_task
from autotune.tracking.traces import log_task_traces, select_sample, trial_traces
from tests.fmware_fakes import ITEM, FakeChat, app
from tests.stand_in import NullReporter, _mlflow_runs

DELAY = 0.3  # every fake FM call sleeps this long (long enough that parallel calls overlap on a busy box)
SLACK = 1.0  # a loaded box may oversleep (CI: 2 busy cores); never undersleep
MS = 1e6  # ns per ms


def record(architecture: str, n: int = 0, lag: float = 0.0) -> tuple[dict, FakeChat]:
    """A task record as the load generator writes it (autotune/loadgen/locustfile.py one_task)."""
    a = app(architecture=architecture)
    chat = FakeChat(a, DELAY)
    send = time.time()
    rec = run_task(a, ITEM, chat)
    rec["service_s"] = rec["latency_s"]
    rec["latency_s"] += lag
    return {"n": n, "id": ITEM["id"], "phase": "measure", "send_ts": send, "scheduled_ts": send - lag if lag else None,
            "lag_s": lag, **rec}, chat


@pytest.fixture
def store(tmp_path):
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    exp = client.create_experiment("t", artifact_location=(tmp_path / "art").as_uri())
    return client, exp, client.create_run(exp).info.run_id


def read_back(client, exp: str, run_id: str):
    infos = client.search_traces(locations=[exp], run_id=run_id)
    return [client.get_trace(t.info.trace_id) for t in infos]


def overlap(a, b) -> bool:
    return a.start_time_ns < b.end_time_ns and b.start_time_ns < a.end_time_ns


@pytest.mark.parametrize("architecture", ["one_call", "parallel", "sequential", "judge"])
def test_span_tree_per_architecture(store, architecture):
    client, exp, run_id = store
    task, chat = record(architecture)
    assert task["ok"]
    assert log_task_traces(client, exp, run_id, [task], {"model": "m1", "output_format": "json"}) == 1
    traces = read_back(client, exp, run_id)
    assert len(traces) == 1, "the trace is listed for its run"
    trace = traces[0]
    assert trace.info.trace_metadata["mlflow.sourceRun"] == run_id and trace.info.state.value == "OK"
    spans = {s.name: s for s in trace.data.spans}
    roots = [s for s in trace.data.spans if s.parent_id is None]
    assert len(roots) == 1 and roots[0].name == "task i1" and len(spans) == len(trace.data.spans)
    root = roots[0]
    assert set(spans) - {"task i1"} == {s["node"] for s in task["spans"]}
    assert (root.end_time_ns - root.start_time_ns) / 1e9 == pytest.approx(task["latency_s"], abs=1e-3)
    by_node = {s["node"]: s for s in task["spans"]}
    calls = {r["node"]: r for r in chat.calls}
    for name, s in spans.items():
        if s is root:
            continue
        assert s.parent_id == root.span_id, name
        assert root.start_time_ns <= s.start_time_ns <= s.end_time_ns <= root.end_time_ns, name
        seconds = (s.end_time_ns - s.start_time_ns) / 1e9
        assert seconds == pytest.approx(by_node[name]["ms"] / 1000.0, abs=1e-3)
        for dep in by_node[name]["deps"]:  # a node never starts before the nodes it waits for have ended
            if dep in spans:
                assert spans[dep].end_time_ns <= s.start_time_ns + 1000, (dep, name)
        if name.startswith("call."):
            assert DELAY <= seconds < DELAY + SLACK, name  # the fake's known timing
            assert s.span_type == "LLM" and s.attributes["ttft_ms"] == pytest.approx(DELAY / 2 * 1000)
            assert s.attributes["tokens_in"] == 10 * len(calls[name]["messages"]) > 0
            assert s.attributes["tokens_out"] == by_node[name]["tokens_out"] > 0
            assert s.attributes["model"] == "m1" and s.attributes["output_format"] == "json"
            first = [e for e in s.events if e.name == "first_token"]
            assert len(first) == 1 and (first[0].timestamp - s.start_time_ns) / MS == pytest.approx(DELAY * 500,
                                                                                                  abs=1)
        else:
            assert seconds < SLACK, name  # parse, aggregate...: CPU only
    fm = [spans[n] for n in sorted(spans) if n.startswith("call.")]
    if architecture == "one_call":
        assert [s.name for s in fm] == ["call.all"]
    if architecture == "parallel":  # the three sub-questions run at once
        assert len(fm) == 3 and all(overlap(a, b) for a, b in itertools.combinations(fm, 2))
        assert (root.end_time_ns - root.start_time_ns) / 1e9 < 2 * DELAY + SLACK
    if architecture == "sequential":  # one after the other: no two calls overlap, in the fields' order
        assert len(fm) == 3 and not any(overlap(a, b) for a, b in itertools.combinations(fm, 2))
        order = sorted(fm, key=lambda s: s.start_time_ns)
        assert [s.name for s in order] == ["call.email", "call.name", "call.address"]
        assert (root.end_time_ns - root.start_time_ns) / 1e9 >= 3 * DELAY
    if architecture == "judge":  # two solvers at once, then the judge after both; accepted in round one
        a, b, judge = spans["call.agent_a.r1"], spans["call.agent_b.r1"], spans["call.judge.r1"]
        assert overlap(a, b) and not overlap(a, judge) and not overlap(b, judge)
        assert judge.start_time_ns >= max(a.end_time_ns, b.end_time_ns)
        assert "call.agent_a.r2" not in spans and "verdict.r1" in spans


def test_open_loop_lag_is_a_span_and_starts_the_task(store):
    client, exp, run_id = store
    task, _ = record("one_call", lag=0.25)
    log_task_traces(client, exp, run_id, [task])
    spans = {s.name: s for s in read_back(client, exp, run_id)[0].data.spans}
    root, lag, call = spans["task i1"], spans["schedule.lag"], spans["call.all"]
    assert lag.parent_id == root.span_id and lag.start_time_ns == root.start_time_ns
    assert (lag.end_time_ns - lag.start_time_ns) / 1e9 == pytest.approx(0.25, abs=1e-3)
    assert call.start_time_ns >= lag.end_time_ns
    assert (root.end_time_ns - root.start_time_ns) / 1e9 == pytest.approx(task["latency_s"], abs=1e-3)


def test_sample_is_the_measured_tail_and_typical_tasks():
    tasks = [{"n": i, "phase": "measure", "ok": True, "latency_s": float(i)} for i in range(1, 42)]  # median 21
    tasks += [{"n": 100, "phase": "warmup", "ok": True, "latency_s": 900.0},  # not of the window
              {"n": 101, "phase": "measure", "ok": False, "latency_s": 100.0},  # a slow failure is the tail
              {"n": 102, "phase": "measure", "ok": False, "latency_s": 21.0},  # a failure is never typical
              {"n": 103, "phase": "measure", "ok": True, "latency_s": None}]
    expected = [("tail", 101), ("tail", 41), ("tail", 40), ("typical", 21), ("typical", 20)]  # 20, 22: tie -> n
    assert [(label, t["n"]) for label, t in select_sample(tasks, tail=3, typical=2)] == expected
    for perm in (tasks[::-1], sorted(tasks, key=lambda t: json.dumps(t))):  # deterministic, whatever the order
        assert [(label, t["n"]) for label, t in select_sample(perm, 3, 2)] == expected
    few = [t for t in tasks if t["n"] in (1, 2)]  # p95 of two tasks: only the slower is in the tail
    assert [(label, t["n"]) for label, t in select_sample(few, 3, 2)] == [("tail", 2), ("typical", 1)]
    assert select_sample([t for t in tasks if t["phase"] == "warmup"]) == []


def test_abandoned_task_is_an_error_trace(store):
    client, exp, run_id = store
    now = time.time()
    task = {"n": 7, "id": "i9", "phase": "measure", "send_ts": now - 2, "scheduled_ts": None, "lag_s": 0.0,
            "ok": False, "abandoned": True, "latency_s": 2.0, "error": "abandoned: still in flight", "fm_calls": 0,
            "tokens_in": 0, "tokens_out": 0, "spans": [], "parses": [], "critical_path": []}
    log_task_traces(client, exp, run_id, [task])
    (trace,) = read_back(client, exp, run_id)
    assert trace.info.state.value == "ERROR" and [s.name for s in trace.data.spans] == ["task i9"]
    assert trace.data.spans[0].status.description.startswith("abandoned")


def test_a_trace_failure_is_recorded_not_raised(store, tmp_path):
    client, exp, run_id = store
    path = tmp_path / "tasks.jsonl"
    path.write_text(json.dumps(record("one_call")[0]) + "\n")
    metrics, tags = trial_traces(client, "123456", run_id, path, {"model": "m"})  # no such experiment
    assert metrics["traces_logged"] == 0 and metrics["trace_write_s"] >= 0 and "autotune.trace_error" in tags
    assert trial_traces(client, exp, run_id, None, {}) == ({"traces_logged": 0.0,
                                                           "trace_write_s": pytest.approx(0, abs=0.1)}, {})
    metrics, tags = trial_traces(client, exp, run_id, path, {"model": "m", "architecture": "one_call"})
    assert metrics["traces_logged"] == 1 and tags == {}
    (trace,) = read_back(client, exp, run_id)
    assert {s.name: s for s in trace.data.spans}["call.all"].attributes["model"] == "m"


def test_study_logs_traces_for_every_trial(setup):  # noqa: F811
    from autotune.search.study import run_search

    opts = setup("{choices: [2, 4]}", n_trials=2)
    assert run_search(opts, NullReporter()).trials_complete == 2
    client, runs = _mlflow_runs(opts)
    trials = [r for r in runs if r.data.tags.get("autotune.role") == "trial"]
    assert len(trials) == 2
    for run in trials:
        m = run.data.metrics
        assert m["traces_logged"] > 0 and 0 < m["trace_write_s"] < 30 and "autotune.trace_error" not in run.data.tags
        traces = client.search_traces(locations=[run.info.experiment_id], run_id=run.info.run_id)
        assert len(traces) == m["traces_logged"]
        assert {t.info.tags["autotune.sample"] for t in traces} <= {"tail", "typical"}
        trace = client.get_trace(traces[0].info.trace_id)
        names = {s.name for s in trace.data.spans}
        assert "call.all" in names and "aggregate" in names
        call = next(s for s in trace.data.spans if s.name == "call.all")
        assert call.attributes["tokens_out"] > 0 and call.attributes["model"]
        print(f"trial {run.data.tags['autotune.trial']}: {m['traces_logged']:.0f} traces in {m['trace_write_s']:.3f} s")
