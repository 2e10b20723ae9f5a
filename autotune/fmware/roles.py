"""The FM roles of the cognitive architectures: which role a DAG node plays, so its calls can be routed to an
endpoint of their own (a `route_<role>` knob each: a strong model as the judge, small ones as the agents)."""

from __future__ import annotations

# role -> what its calls are, in words
ROLES = {"one_call": "one-call (#1)", "subquestions": "sub-question (#2, #3)", "agents": "two agents' (#4)",
         "judge": "judge's (#4)", "reask": "repair re-ask"}


def roles_of(architecture: str, repair: str) -> set[str]:
    """The roles an application's FM calls play: its architecture's, and `reask` when repair re-asks."""
    own = {"one_call": {"one_call"}, "parallel": {"subquestions"}, "sequential": {"subquestions"},
           "judge": {"agents", "judge"}}.get(architecture, set())
    return own | ({"reask"} if repair == "reask" else set())


def role_of(node: str | None) -> str | None:
    """`call.all` one_call, `call.<field>` subquestions, `call.agent_a.r1` agents, `call.judge.r1` judge,
    `reask.<key>` reask; None for a node that makes no FM call."""
    if not node:
        return None
    if node.startswith("reask."):
        return "reask"
    if not node.startswith("call."):
        return None
    rest = node[len("call."):]
    if rest == "all":
        return "one_call"
    if rest.startswith(("agent_a.", "agent_b.")):
        return "agents"
    if rest.startswith("judge."):
        return "judge"
    return "subquestions"
