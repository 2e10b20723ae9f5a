"""The DAG executor with a deterministic fake chat: ordering, real concurrency, timing, skips, failures."""

from __future__ import annotations

import time

import pytest

from autotune.fmware.dag import SKIP, Node, check, execute


def _chat(delay: float, log: list):
    def chat(req):
        log.append(("start", req["node"], time.perf_counter()))
        time.sleep(delay)
        log.append(("end", req["node"], time.perf_counter()))
        return {"ok": True, "text": req["node"], "ttft_s": delay / 2, "prompt_tokens": 5, "completion_tokens": 3}
    return chat


def _fm(name, *deps):
    return Node(name, "fm", deps, build=lambda r, name=name: {"messages": [], "node_hint": name})


def test_parallel_branches_overlap_and_join_waits_for_all():
    log: list = []
    nodes = [_fm("a"), _fm("b"), _fm("c"), Node("join", "cpu", ("a", "b", "c"), run=lambda r: sorted(r))]
    t0 = time.perf_counter()
    trace = execute(nodes, _chat(0.3, log))
    wall = time.perf_counter() - t0
    assert wall < 0.6, "three 0.3 s calls in parallel must not take 0.9 s"
    starts = [t for kind, _, t in log if kind == "start"]
    ends = [t for kind, _, t in log if kind == "end"]
    assert max(starts) < min(ends), "all three calls were in flight at once"
    assert trace.results["join"] == ["a", "b", "c"]
    join = next(s for s in trace.spans if s.node == "join")
    assert join.start >= max(s.end for s in trace.spans if s.node != "join") - 1e-6
    assert trace.fm_calls == 3 and trace.error is None


def test_chain_runs_in_order_and_critical_path_is_the_longest_branch():
    log: list = []
    slow = Node("slow", "fm", (), build=lambda r: {"messages": [], "delay": 1})
    nodes = [_fm("a"), _fm("b", "a"), slow, Node("join", "cpu", ("b", "slow"), run=lambda r: 1)]

    def chat(req):
        time.sleep(0.8 if req["node"] == "slow" else 0.1)
        log.append(req["node"])
        return {"ok": True, "text": "", "prompt_tokens": 1, "completion_tokens": 1}

    trace = execute(nodes, chat)
    assert log.index("a") < log.index("b")
    assert [s.node for s in trace.critical_path()] == ["slow", "join"]
    assert 0.8 <= trace.latency_s < 1.5
    spans = {s.node: s for s in trace.spans}
    assert spans["b"].ready >= spans["a"].end - 1e-6 and spans["b"].start >= spans["a"].end - 1e-6
    assert spans["a"].tokens_in == 1 and spans["a"].kind == "fm"


def test_skipped_nodes_are_not_run_and_do_not_block():
    calls: list = []
    nodes = [Node("gate", "cpu", (), run=lambda r: {"open": False}),
             Node("maybe", "fm", ("gate",), build=lambda r: None if not r["gate"]["open"] else {"messages": []}),
             Node("after", "cpu", ("maybe",), run=lambda r: SKIP if "maybe" not in r else 1),
             Node("end", "cpu", ("after",), run=lambda r: "done")]
    trace = execute(nodes, lambda req: calls.append(req) or {"ok": True, "text": ""})
    assert calls == [] and sorted(trace.skipped) == ["after", "maybe"] and trace.results["end"] == "done"
    assert [s.node for s in trace.critical_path()] == ["gate", "end"]


def test_failed_call_fails_the_task_and_skips_the_rest():
    nodes = [_fm("a"), _fm("b", "a"), Node("c", "cpu", ("b",), run=lambda r: 1)]
    trace = execute(nodes, lambda req: {"ok": False, "error": "HTTP 500: boom"})
    assert trace.error == "a: FMCallError: HTTP 500: boom"
    assert set(trace.skipped) == {"b", "c"} and trace.spans == []


def test_exception_in_cpu_node_is_recorded_not_raised():
    nodes = [Node("bad", "cpu", (), run=lambda r: 1 / 0), Node("next", "cpu", ("bad",), run=lambda r: 1)]
    trace = execute(nodes, lambda req: {})
    assert "ZeroDivisionError" in trace.error and trace.skipped == ["next"]


def test_graph_is_checked():
    with pytest.raises(ValueError, match="not listed before it"):
        check([Node("a", "cpu", ("b",), run=lambda r: 1), Node("b", "cpu", (), run=lambda r: 1)])
    with pytest.raises(ValueError, match="duplicate"):
        check([Node("a", "cpu", (), run=lambda r: 1)] * 2)
    with pytest.raises(ValueError, match="fm nodes need `build`"):
        check([Node("a", "fm", (), run=lambda r: 1)])
