"""The four cognitive architectures as DAGs of FM-call and CPU nodes (the seeds' #1-#4).

#1 one_call    call.all -> parse.all [-> reask.all -> reparse.all] -> aggregate
#2 parallel    call.<f> for every field at once, each with its parse/repair chain -> aggregate
#3 sequential  call.<f1> -> parse -> call.<f2> (sees f1's answer) -> ... easy to hard -> aggregate
#4 judge       call.agent_a.r1 || call.agent_b.r1 -> call.judge.r1 -> parse/repair -> verdict.r1
               -> round 2 only if the judge said RETRY or gave no usable answer ... up to `judge_rounds`

With the semantic cache on, `cache.lookup` runs first (every FM node skips on a hit) and `cache.store` last.
Every FM reply that must be read goes through parse (strict); on failure, repair `cpu` salvages it in the
same node, repair `reask` adds one FM call with the parse error and a strict reparse.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from autotune.fmware import app as prompts
from autotune.fmware.app import AppConfig
from autotune.fmware.dag import SKIP, Node
from autotune.fmware.formats import ParseError

Results = dict[str, Any]
Messages = Callable[[Results], list[dict[str, str]]]


def _parse(app: AppConfig, text: str, fields: list[str]) -> dict[str, Any]:
    try:
        values = app.parse(text, fields)  # the format, and labelled fields hold a declared label
        if app.repair == "cpu":  # well-formed, but values may be wrapped in a sentence: unwrap them on the CPU
            cleaned = app.cpu_clean(values)
            if cleaned != values:
                return {"values": cleaned, "valid": True, "repair": "cpu", "error": None}
        return {"values": values, "valid": True, "repair": "none", "error": None}
    except ParseError as exc:
        if app.repair == "cpu":
            got = app.cpu_clean(app.fmt.salvage(text, fields))  # a labelled value that is no label is dropped
            return {"values": got, "valid": False, "repair": "cpu" if got else "failed", "error": str(exc)}
        return {"values": {}, "valid": False, "repair": "pending" if app.repair == "reask" else "failed",
                "error": str(exc)}


def chain_result(results: Results, key: str) -> dict[str, Any] | None:
    """The final parse of a chain: the reparse after a reask when there was one."""
    return results.get(f"reparse.{key}") or results.get(f"parse.{key}")


def chain_end(key: str) -> tuple[str, ...]:
    return f"parse.{key}", f"reask.{key}", f"reparse.{key}"


def _chain(app: AppConfig, key: str, fields: list[str], messages: Messages, deps: tuple[str, ...],
           when: Callable[[Results], bool], sample: int = 0) -> list[Node]:
    """call -> parse -> reask -> reparse for one FM reply that must hold `fields`."""
    call, parse, reask, reparse = f"call.{key}", *chain_end(key)

    def build_call(r: Results):
        return prompts.request(app, messages(r), fields, sample=sample) if when(r) else None

    def run_parse(r: Results):
        if call not in r:
            return SKIP
        text = r[call]["text"]
        if key.startswith("judge") and text.strip().strip(".").upper() == "RETRY":
            return {"values": {}, "valid": True, "repair": "none", "error": None, "retry": True}
        return _parse(app, text, fields)

    def build_reask(r: Results):
        p = r.get(parse)
        if not p or p["repair"] != "pending":
            return None
        msgs = prompts.reask(app, messages(r), r[call]["text"], p["error"], fields)
        return prompts.request(app, msgs, fields, sample=sample)

    def run_reparse(r: Results):
        if reask not in r:
            return SKIP
        try:
            return {"values": app.parse(r[reask]["text"], fields), "valid": False, "repair": "reask",
                    "error": None}
        except ParseError as exc:
            return {"values": {}, "valid": False, "repair": "failed", "error": str(exc)}

    return [Node(call, "fm", deps, build=build_call), Node(parse, "cpu", (call,), run=run_parse),
            Node(reask, "fm", (parse,), build=build_reask), Node(reparse, "cpu", (reask,), run=run_reparse)]


def _one_call(app: AppConfig, item: dict, start: tuple[str, ...], fresh) -> tuple[list[Node], list[str]]:
    return _chain(app, "all", list(app.fields), lambda r: prompts.all_fields(app, item), start, fresh), ["all"]


def _parallel(app: AppConfig, item: dict, start: tuple[str, ...], fresh) -> tuple[list[Node], list[str]]:
    nodes: list[Node] = []
    for f in app.fields:
        nodes += _chain(app, f, [f], lambda r, f=f: prompts.one_field(app, item, f), start, fresh)
    return nodes, list(app.fields)


def _sequential(app: AppConfig, item: dict, start: tuple[str, ...], fresh) -> tuple[list[Node], list[str]]:
    nodes: list[Node] = []
    deps = start
    for i, f in enumerate(app.fields):
        earlier = list(app.fields[:i])

        def messages(r: Results, f=f, earlier=earlier):
            known = {}
            for e in earlier:
                got = (chain_result(r, e) or {}).get("values", {}).get(e)
                if got:
                    known[e] = got
            return prompts.one_field(app, item, f, known)

        nodes += _chain(app, f, [f], messages, deps, fresh)
        deps = chain_end(f)
    return nodes, list(app.fields)


def _judge(app: AppConfig, item: dict, start: tuple[str, ...], fresh) -> tuple[list[Node], list[str]]:
    nodes: list[Node] = []
    keys = []
    prev: tuple[str, ...] = start
    for rnd in range(1, app.judge_rounds + 1):
        a, b, key = f"call.agent_a.r{rnd}", f"call.agent_b.r{rnd}", f"judge.r{rnd}"
        verdict_prev = f"verdict.r{rnd - 1}"

        def go_on(r: Results, rnd=rnd, verdict_prev=verdict_prev) -> bool:
            if rnd == 1:
                return fresh(r)
            v = r.get(verdict_prev)
            return v is not None and not v["accepted"]

        def solver(r: Results, sample: int):
            return prompts.request(app, prompts.all_fields(app, item), list(app.fields), sample=sample)

        # agent B samples (temperature floor 0.7) so the two solvers can disagree even at temperature 0
        nodes.append(Node(a, "fm", prev, build=lambda r, go=go_on, s=2 * rnd: solver(r, s) if go(r) else None))
        nodes.append(Node(b, "fm", prev, build=lambda r, go=go_on, s=2 * rnd + 1:
                          {**solver(r, s), "temperature": max(0.7, app.temperature)} if go(r) else None))
        nodes += _chain(app, key, list(app.fields),
                        lambda r, a=a, b=b: prompts.judge(app, item, r[a]["text"], r[b]["text"]),
                        (a, b), lambda r, a=a: a in r, sample=2 * rnd)

        def verdict(r: Results, key=key, a=a):
            res = chain_result(r, key)
            if res is None:
                return SKIP
            complete = all(res["values"].get(f) for f in app.fields)
            return {"accepted": not res.get("retry") and complete, "values": res["values"],
                    "fallback": r[a]["text"]}

        nodes.append(Node(f"verdict.r{rnd}", "cpu", chain_end(key), run=verdict))
        prev = (f"verdict.r{rnd}",)
        keys.append(key)
    return nodes, keys


BUILDERS = {"one_call": _one_call, "parallel": _parallel, "sequential": _sequential, "judge": _judge}


def build(app: AppConfig, item: dict[str, Any], cache=None) -> list[Node]:
    """The DAG for one task. `cache` has lookup(text) -> (answer, info) | None and store(text, answer, info)."""
    nodes: list[Node] = []
    start: tuple[str, ...] = ()
    if cache is not None:
        nodes.append(Node("cache.lookup", "cpu", (), run=lambda r: {"hit": cache.lookup(item["context"])}))
        start = ("cache.lookup",)

    def fresh(r: Results) -> bool:
        return cache is None or r["cache.lookup"]["hit"] is None

    body, keys = BUILDERS[app.architecture](app, item, start, fresh)
    nodes += body
    ends = tuple(n.name for n in body if n.name.startswith(("parse.", "reask.", "reparse.", "verdict.")))
    nodes.append(Node("aggregate", "cpu", start + ends, run=lambda r: _aggregate(app, r, keys)))
    if cache is not None:

        def store(r: Results):
            if r["aggregate"]["cache_hit"]:
                return SKIP
            cache.store(item["context"], r["aggregate"]["values"], item.get("source", {}))
            return {"stored": bool(r["aggregate"]["values"])}

        nodes.append(Node("cache.store", "cpu", ("aggregate",), run=store))
    return nodes


def _aggregate(app: AppConfig, r: Results, keys: list[str]) -> dict[str, Any]:
    hit = (r.get("cache.lookup") or {}).get("hit")
    if hit is not None:
        return {"values": dict(hit["values"]), "complete": True, "cache_hit": True, "cache": hit}
    values: dict[str, str] = {}
    if app.architecture == "judge":
        verdicts = [r[k] for k in sorted((k for k in r if k.startswith("verdict.r")), key=lambda k: int(k[9:]))]
        last = verdicts[-1]
        if last["accepted"]:
            values = dict(last["values"])
        else:  # the judge never accepted: fall back to agent A's answer, salvaged
            values = app.cpu_clean(app.fmt.salvage(last["fallback"], list(app.fields)), unwrap=False) \
                if app.repair == "cpu" else _strict_or_empty(app, last["fallback"])
    else:
        for key in keys:
            values.update((chain_result(r, key) or {}).get("values", {}))
    complete = all(values.get(f) for f in app.fields)
    return {"values": values, "complete": complete, "cache_hit": False, "cache": None}


def _strict_or_empty(app: AppConfig, text: str) -> dict[str, str]:
    try:
        return app.parse(text, list(app.fields))
    except ParseError:
        return {}


def parse_stats(results: Results) -> list[dict[str, Any]]:
    """Every parsed FM reply of the task: strict validity on the first try, whether it was reasked, and the
    repair that produced the final value (none | cpu | reask | failed), for the format metrics."""
    stats = []
    for name, v in results.items():
        if name.startswith("parse.") and isinstance(v, dict) and not v.get("retry"):
            final = results.get("re" + name, v)
            stats.append({"node": name, "valid": v["valid"], "reasked": ("reask." + name[6:]) in results,
                          "repair": final["repair"]})
    return stats
