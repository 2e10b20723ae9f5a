"""A tiny DAG executor for one task: FM-call nodes and CPU nodes, each starting as soon as its deps finish.

Every node runs in its own thread; inside Locust, gevent has patched `threading`, so these are greenlets and
parallel branches issue real concurrent HTTP requests. A node may decide it is not needed (return SKIP, or an
FM node's `build` returns None): loops such as "judge until accepted" are unrolled to K rounds whose later
rounds skip. The trace records, per executed node, when it became ready, started and ended (seconds from the
task start) and, for FM calls, TTFT and tokens; `critical_path` walks back from the last node to finish.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

SKIP = object()  # a node's result meaning "not needed in this task"


@dataclass
class Node:
    name: str
    kind: Literal["fm", "cpu"]
    deps: tuple[str, ...] = ()
    run: Callable[[dict[str, Any]], Any] | None = None  # cpu: results -> value (or SKIP)
    build: Callable[[dict[str, Any]], dict[str, Any] | None] | None = None  # fm: results -> request (None: skip)


@dataclass
class Span:
    node: str
    kind: str
    deps: tuple[str, ...]
    ready: float
    start: float
    end: float
    ttft_s: float | None = None
    tokens_in: int = 0
    tokens_out: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {"node": self.node, "kind": self.kind, "deps": list(self.deps), "ready": self.ready,
                "start": self.start, "end": self.end, "ms": (self.end - self.start) * 1000.0,
                "ttft_s": self.ttft_s, "tokens_in": self.tokens_in, "tokens_out": self.tokens_out}


@dataclass
class Trace:
    results: dict[str, Any]
    spans: list[Span]
    skipped: list[str]
    ends: dict[str, float]  # every node, executed or skipped (a skipped node "ends" when it became ready)
    deps: dict[str, tuple[str, ...]]
    error: str | None = None
    latency_s: float = 0.0
    fm_calls: int = field(init=False)

    def __post_init__(self) -> None:
        self.fm_calls = sum(1 for s in self.spans if s.kind == "fm")

    def critical_path(self) -> list[Span]:
        """Executed nodes on the longest dependency chain ending at the last node to finish."""
        by_name = {s.node: s for s in self.spans}
        if not self.ends:
            return []
        node: str | None = max(self.ends, key=lambda n: self.ends[n])
        path = []
        while node is not None:
            if node in by_name:
                path.append(by_name[node])
            deps = self.deps.get(node, ())
            node = max(deps, key=lambda d: self.ends[d]) if deps else None
        return path[::-1]


ChatFn = Callable[[dict[str, Any]], dict[str, Any]]


def check(nodes: list[Node]) -> None:
    """Names unique, deps known and earlier in the list (so the graph is acyclic by construction)."""
    seen: set[str] = set()
    for n in nodes:
        if n.name in seen:
            raise ValueError(f"duplicate node {n.name!r}")
        unknown = [d for d in n.deps if d not in seen]
        if unknown:
            raise ValueError(f"node {n.name!r} depends on {unknown}, which are not listed before it")
        if (n.kind == "fm") != (n.build is not None) or (n.kind == "cpu") != (n.run is not None):
            raise ValueError(f"node {n.name!r}: fm nodes need `build`, cpu nodes need `run`")
        seen.add(n.name)


def execute(nodes: list[Node], chat: ChatFn, clock: Callable[[], float] = time.perf_counter) -> Trace:
    """Run the DAG; the first failing node (FM error or exception) makes the rest skip and sets `error`."""
    check(nodes)
    done = {n.name: threading.Event() for n in nodes}
    results: dict[str, Any] = {}
    spans: list[Span] = []
    skipped: list[str] = []
    ends: dict[str, float] = {}
    errors: list[str] = []
    lock = threading.Lock()
    t0 = clock()

    def worker(node: Node) -> None:
        try:
            for d in node.deps:
                done[d].wait()
            ready = max((ends[d] for d in node.deps), default=0.0)
            if errors:
                value, span = SKIP, None
            else:
                value, span = _run(node, results, chat, clock, t0, ready)
            with lock:
                if value is SKIP:
                    skipped.append(node.name)
                    ends[node.name] = ready
                else:
                    results[node.name] = value
                    spans.append(span)
                    ends[node.name] = span.end
        except Exception as exc:  # recorded as the task's failure; never kills the load generator
            with lock:
                errors.append(f"{node.name}: {type(exc).__name__}: {exc}"[:300])
                ends.setdefault(node.name, clock() - t0)
        finally:
            done[node.name].set()

    threads = [threading.Thread(target=worker, args=(n,), daemon=True) for n in nodes]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    spans.sort(key=lambda s: s.start)
    trace = Trace(results=results, spans=spans, skipped=skipped, ends=ends, deps={n.name: n.deps for n in nodes},
                  error=errors[0] if errors else None)
    trace.latency_s = max(ends.values(), default=0.0)
    return trace


class FMCallError(RuntimeError):
    """An FM call that did not return a usable reply (HTTP error, transport error, no usage)."""


def _run(node: Node, results: dict[str, Any], chat: ChatFn, clock, t0: float, ready: float):
    if node.kind == "fm":
        request = node.build(results)
        if request is None:
            return SKIP, None
        start = clock() - t0
        reply = chat({**request, "node": node.name})
        end = clock() - t0
        if not reply.get("ok"):
            raise FMCallError(reply.get("error") or "FM call failed")
        span = Span(node.name, "fm", node.deps, ready, start, end, reply.get("ttft_s"),
                    reply.get("prompt_tokens") or 0, reply.get("completion_tokens") or 0)
        return reply, span
    start = clock() - t0
    value = node.run(results)
    end = clock() - t0
    if value is SKIP:
        return SKIP, None
    return value, Span(node.name, "cpu", node.deps, ready, start, end)
