"""The four architectures and the repair strategies, run through the DAG executor with a fake chat."""

from __future__ import annotations

import pytest

from autotune.fmware.runner import run_task
from tests.fmware_fakes import ITEM, VALUES, FakeChat, app

DELAY = 0.1


@pytest.mark.parametrize("fmt", ["json", "yaml", "xml", "text", "minimal"])
def test_one_call(fmt):
    a = app(architecture="one_call", output_format=fmt)
    chat = FakeChat(a, DELAY)
    rec = run_task(a, ITEM, chat)
    assert rec["ok"] and rec["answer"] == VALUES and rec["complete"]
    assert rec["fm_calls"] == 1 and rec["parses"] == [{"node": "parse.all", "valid": True, "reasked": False,
                                                       "repair": "none"}]
    assert rec["critical_path"] == ["call.all", "parse.all", "aggregate"]


def test_parallel_sub_questions_are_concurrent():
    a = app(architecture="parallel")
    chat = FakeChat(a, 0.3)
    rec = run_task(a, ITEM, chat)
    assert rec["answer"] == VALUES and rec["fm_calls"] == 3 and chat.max_active == 3
    assert rec["latency_s"] < 0.6, "three concurrent 0.3 s calls take about one call's time, not 0.9 s"
    assert {s["node"] for s in rec["spans"] if s["kind"] == "fm"} == {"call.email", "call.name", "call.address"}


def test_sequential_sub_questions_see_earlier_answers_in_order():
    a = app(architecture="sequential")
    chat = FakeChat(a, DELAY)
    rec = run_task(a, ITEM, chat)
    assert rec["answer"] == VALUES and rec["fm_calls"] == 3 and chat.max_active == 1
    assert rec["latency_s"] >= 3 * DELAY
    assert [c["node"] for c in chat.calls] == ["call.email", "call.name", "call.address"]
    last = chat.calls[-1]["messages"][-1]["content"]
    assert "- email: ada@example.org" in last and "- name: Ada Lovelace" in last
    assert "Already established" not in chat.calls[0]["messages"][-1]["content"]


def test_judge_accepts_in_round_one():
    a = app(architecture="judge", judge_rounds=3)
    chat = FakeChat(a, DELAY)
    rec = run_task(a, ITEM, chat)
    assert rec["answer"] == VALUES and rec["fm_calls"] == 3 and chat.max_active == 2
    agent_b = next(c for c in chat.calls if c["node"] == "call.agent_b.r1")
    assert agent_b["temperature"] >= 0.7, "the second solver samples so the two can disagree"
    assert "call.agent_a.r2" in rec["skipped"]


def test_judge_retry_loops_until_accepted_and_gives_up_after_k_rounds():
    a = app(architecture="judge", judge_rounds=3)
    rec = run_task(a, ITEM, FakeChat(a, 0.01, judge_retries=1))
    assert rec["fm_calls"] == 6 and rec["answer"] == VALUES
    a2 = app(architecture="judge", judge_rounds=2)
    rec2 = run_task(a2, ITEM, FakeChat(a2, 0.01, judge_retries=9))
    assert rec2["fm_calls"] == 6 and rec2["answer"] == VALUES, "falls back to agent A's answer"


def test_repair_none_cpu_reask():
    none = app(repair="none")
    rec = run_task(none, ITEM, FakeChat(none, 0.01, chatter=True))
    assert rec["ok"] and rec["answer"] == {} and not rec["complete"]
    assert rec["parses"][0]["valid"] is False and rec["parses"][0]["repair"] == "failed"

    cpu = app(repair="cpu")
    rec = run_task(cpu, ITEM, FakeChat(cpu, 0.01, chatter=True))
    assert rec["answer"] == VALUES and rec["fm_calls"] == 1 and rec["parses"][0]["repair"] == "cpu"

    reask = app(repair="reask")
    chat = FakeChat(reask, 0.01, chatter=True)
    rec = run_task(reask, ITEM, chat)
    assert rec["answer"] == VALUES and rec["fm_calls"] == 2
    assert rec["parses"][0] == {"node": "parse.all", "valid": False, "reasked": True, "repair": "reask"}
    follow_up = chat.calls[1]["messages"]
    assert follow_up[-2]["role"] == "assistant" and "could not be parsed" in follow_up[-1]["content"]


def test_reask_is_skipped_when_the_reply_is_valid():
    reask = app(repair="reask")
    rec = run_task(reask, ITEM, FakeChat(reask, 0.01))
    assert rec["fm_calls"] == 1 and "call.all" not in rec["skipped"] and "reask.all" in rec["skipped"]


def test_structured_outputs_request_follows_the_knob():
    chat = FakeChat(app(), 0.0)
    run_task(app(constrained="json_schema"), ITEM, chat)
    assert chat.calls[-1]["structured_outputs"]["json"]["required"] == ["email", "name", "address"]
    run_task(app(constrained="regex", output_format="yaml"), ITEM, chat)
    assert chat.calls[-1]["structured_outputs"]["regex"].startswith("email: ")
    run_task(app(), ITEM, chat)
    assert "structured_outputs" not in chat.calls[-1]
    assert app(constrained="json_schema", output_format="xml").problem() == \
        "constrained=json_schema needs output_format=json, got xml"


def test_few_shot_examples_precede_the_question():
    shot = {"id": "s", "context": "Article: Bob, bob@x.org, 2 Lane", "task": "TASK",
            "questions": {"email": "Q-email?", "name": "Q-name?", "address": "Q-address?"},
            "answer": {"email": "bob@x.org", "name": "Bob", "address": "2 Lane"}}
    a = app(prompt_variant="few_shot", examples=(shot,), system="SYS")
    chat = FakeChat(a, 0.0)
    run_task(a, ITEM, chat)
    roles = [m["role"] for m in chat.calls[0]["messages"]]
    assert roles == ["system", "user", "assistant", "user"]
    assert chat.calls[0]["messages"][2]["content"] == '{"email": "bob@x.org", "name": "Bob", "address": "2 Lane"}'


def test_cpu_repair_unwraps_sentence_values_of_a_well_formed_reply():
    a = app(architecture="parallel", output_format="minimal", repair="cpu")

    def chat(req):
        field = next(f for f in ("email", "name", "address") if f"Q-{f}?" in req["messages"][-1]["content"])
        return {"ok": True, "text": f"The main person's {field} is {VALUES[field]}.", "prompt_tokens": 1,
                "completion_tokens": 1}

    rec = run_task(a, ITEM, chat)
    assert rec["answer"] == VALUES and all(p["valid"] and p["repair"] == "cpu" for p in rec["parses"])
    plain = run_task(app(architecture="parallel", output_format="minimal"), ITEM, chat)
    assert plain["answer"]["name"] == "The main person's name is Ada Lovelace."


def test_every_fm_node_of_every_architecture_has_the_role_its_route_knob_names():
    """one_call -> one_call; parallel and sequential -> subquestions; judge -> agents and judge; a re-ask ->
    reask; CPU nodes none. A node nobody routes is an FM call a `route_<role>` knob could not move."""
    from autotune.fmware import ROLES, role_of
    from autotune.fmware.architectures import build
    from tests.fmware_fakes import app

    seen = {}
    for arch in ("one_call", "parallel", "sequential", "judge"):
        nodes = build(app(architecture=arch, repair="reask"), {"id": "x", "input": {}, "reference": {}})
        for node in nodes:
            role = role_of(node.name)
            assert (role is not None) == (node.kind == "fm"), (arch, node.name, node.kind)
            if role:
                seen.setdefault(arch, set()).add(role)
    assert seen == {"one_call": {"one_call", "reask"}, "parallel": {"subquestions", "reask"},
                    "sequential": {"subquestions", "reask"}, "judge": {"agents", "judge", "reask"}}
    assert set().union(*seen.values()) == set(ROLES)
