"""The shared state of one load run (one per Locust process), the no-progress watchdog that reads it, and how
work still in flight at the drain's end is counted. Used by the locustfile; gevent-aware, no Locust import."""

from __future__ import annotations

import itertools
import time

import gevent

from autotune.loadgen.probes import server_tokens


class Run:
    """Shared state of one load run (one per Locust process)."""

    t0 = 0.0
    warmup_end = 0.0
    measure_end = 0.0
    in_flight = 0  # tasks started and not finished (a task may be in a CPU node, not waiting on the engine)
    measured_in_flight = 0  # of those, the ones started in the window: cooldown load runs until they finish
    open_tasks: dict[int, dict] = {}  # n -> the task's start record, until it finishes
    open_requests: dict[int, dict] = {}  # id(record) -> the request record, until its response ends
    outstanding = 0  # HTTP requests waiting on the engine
    engine_in_flight = 0  # of them, the ones sent to the engine itself (not routed or spilled to an API)
    last_progress = 0.0  # time of the latest chunk / response / transport error from the engine
    server_tokens: float | None = None  # the server's generation counter, read halfway through a quiet spell
    baseline_for = 0.0  # the quiet spell (its last_progress) that counter belongs to
    hung_ts: float | None = None  # when the stall was confirmed
    hung_s: float | None = None  # a confirmed stall (seconds without progress when it was confirmed)
    stopping = False  # the drain is over: no more cooldown load
    early_stop: str | None = None  # a capacity level's verdict reached before its window's end
    queue: list[int] = []  # `once` (the evaluation completion pass): task indexes not started yet
    scheduled: list[float] = []  # open loop: every arrival the schedule produced (the generator's fidelity)
    gauge_samples: list[dict[str, float]] = []  # /metrics gauges polled through the window
    loop_lags: list[float] = []  # how late the event loop woke from 50 ms sleeps (s)
    host = ""
    counter = itertools.count()
    order: list[int] = []
    records: list[dict] = []
    tasks: list[dict] = []
    rusage0 = None
    model: str | None = None  # the `model` clients send (the config's, else the server's first)
    role = "local"
    index = 0
    suffix = ""


def stall_s(stall_timeout_s: float) -> float | None:
    """Seconds without progress when requests are outstanding and that exceeds stall_timeout_s, else None.
    The server may be busy for another load process, or with requests queued ahead of ours: its generation
    counter is read once halfway through a quiet spell and again at the timeout, and only a counter that did not
    move confirms the stall. Detection takes the setting plus one /metrics round trip, not twice the setting."""
    if Run.hung_s is not None:  # confirmed once: never ask the frozen server again
        return Run.hung_s
    now = time.time()
    idle = now - Run.last_progress
    if Run.outstanding == 0 or idle <= stall_timeout_s / 2:
        return None
    if Run.baseline_for != Run.last_progress:  # the first look in this quiet spell: the counter to compare with
        Run.baseline_for = Run.last_progress
        Run.server_tokens = server_tokens(Run.host, timeout_s=min(5.0, stall_timeout_s / 2))
        return None
    if idle <= stall_timeout_s:
        return None
    # a server that did not answer /metrics at the halfway look is not asked again (a frozen one never answers)
    tokens = None if Run.server_tokens is None else server_tokens(Run.host, min(5.0, stall_timeout_s))
    if tokens is not None and tokens > Run.server_tokens:
        Run.last_progress = time.time()  # the server made progress since the baseline: alive, a new spell
        return None
    Run.hung_s = time.time() - Run.last_progress
    Run.hung_ts = time.time()
    return Run.hung_s


def wait(until: float, stall_timeout_s: float, busy=None, step: float = 0.2) -> bool:
    """Sleep until `until` (or until busy() turns false), watching for a stall; False when the engine stalled."""
    while time.time() < until and (busy is None or busy()):
        if stall_s(stall_timeout_s) is not None:
            return False
        gevent.sleep(min(step, max(0.0, until - time.time())))
    return stall_s(stall_timeout_s) is None


def abandon(now: float) -> tuple[int, int]:
    """Work of the window still in flight when the drain ends is a failure, with the elapsed time as its latency:
    dropping it would take the slowest tasks out of both the error rate and the percentiles."""
    tasks = [t for t in Run.open_tasks.values() if t["phase"] == "measure"]
    for t in tasks:
        origin = t["scheduled_ts"] or t["send_ts"]
        Run.tasks.append({**t, "ok": False, "abandoned": True, "latency_s": now - origin, "service_s": None,
                          "error": "abandoned: still in flight when the drain ended", "fm_calls": 0, "tokens_in": 0,
                          "tokens_out": 0, "spans": [], "parses": [], "critical_path": []})
    requests = [r for r in Run.open_requests.values() if r["phase"] == "measure"]
    for r in requests:
        Run.records.append({**r, "ok": False, "abandoned": True, "e2e_s": now - r["send_ts"],
                            "error": "abandoned: no complete response when the drain ended"})
    return len(tasks), len(requests)
