"""Locust load for an OpenAI-compatible chat server (vLLM): each user runs whole application tasks.

A task is one dataset item pushed through the trial's cognitive architecture (a DAG of FM calls and CPU nodes,
see autotune/fmware), so the load has the application's shape: parallel sub-questions really are concurrent
requests, chains really wait. It runs by hand too:

    AUTOTUNE_LOAD_CONFIG=runs/<study>/trial-0003/load/load-config.json \
        locust -f autotune/loadgen/locustfile.py --host http://127.0.0.1:8000 --headless -u 8 -r 8

Without AUTOTUNE_LOAD_CONFIG it sends a built-in task in closed loop. The config (written by autotune) is a
LoadConfig (autotune/loadgen/load_config.py, every key documented there), validated on read.

Arrival models: `closed` - every user starts its next task when the previous one ends; `poisson` - every
user draws exponential gaps at rate/users and starts tasks without waiting (open loop; the superposition
of the users' Poisson processes is Poisson at `rate` tasks/s). Tasks start only until the end of the
measurement window; the ones in flight then get `drain_timeout_s` to finish. Results go to out_dir:
tasks.jsonl (one record per task: latency, nodes, answer), requests.jsonl (one per FM call), summary.json,
metrics-before.txt / metrics-after.txt (server /metrics snapshots at the start of the window and after the
drain).

No-progress watchdog: when HTTP requests are outstanding and nothing (a chunk, a response, a transport error)
has come back from the engine for `stall_timeout_s`, the engine is frozen; the run stops waiting at once,
writes what it has and marks the summary `engine_hung` (autotune turns that into a FAILED trial).
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from pathlib import Path

import gevent
import scipy.special  # noqa: F401  a level judges itself (Wilson interval) as it runs: import it now, not then
from locust import HttpUser, events, task
from locust.exception import StopUser

from autotune.fmware import AppConfig, SemanticCache, minilm_embedder, role_of, run_task
from autotune.loadgen.launch import STANDBY_READY
from autotune.loadgen.load_config import BUILT_IN, LoadConfig, read_load_config
from autotune.loadgen.probes import gauge_summary, lag_ms, poll_gauges, scrape, watch_loop
from autotune.loadgen.run_state import Run, abandon, stall_s, wait
from autotune.loadgen.schedule import level_seed, task_order, window_arrivals
from autotune.sla import early_stop, level_counts


def _load_config() -> LoadConfig:
    """The run's LoadConfig (autotune.loadgen.load_config), validated: an unknown key is an error, not ignored."""
    path = os.environ.get("AUTOTUNE_LOAD_CONFIG")
    if path == "-":  # a standby (autotune.loadgen.standby): imported, it blocks until told its config's path
        print(STANDBY_READY, flush=True)
        path = sys.stdin.readline().strip()
        if not path:  # closed unused
            raise SystemExit(0)
    return read_load_config(path) if path else BUILT_IN


CFG = _load_config()
APP = AppConfig.from_dict(CFG.app)
# one cache per load process, shared by every user; the embedder loads before the first user starts


def _off_loop(embed):
    """The cache's embedding runs in gevent's native thread pool (torch releases the GIL), so the event loop
    keeps timestamping every other stream meanwhile instead of stalling ~30 ms per lookup."""
    pool = gevent.get_hub().threadpool
    return lambda text: pool.apply(embed, (text,))


CACHE = SemanticCache(_off_loop(minilm_embedder()), APP.cache_threshold) if APP.cache_threshold else None
if CACHE is not None:
    CACHE.embed("warm up")  # through the thread pool lookups use: its thread and torch state start now, not in a window
# the event loop's clock stood still while a standby blocked on its config and while the embedder loaded: refresh
# it, or Locust's run-time timer (and every gevent timer) measured from the stale time fires early by those seconds
gevent.get_hub().loop.update_now()
Run.model = CFG.model


def _role(environment) -> str:
    from locust.runners import MasterRunner, WorkerRunner

    if isinstance(environment.runner, MasterRunner):
        return "master"
    return "worker" if isinstance(environment.runner, WorkerRunner) else "local"


class Done:
    """Master side of distributed mode (`processes` > 1): workers report when their drain is over."""

    workers: set[int] = set()


@events.init.add_listener
def _on_init(environment, **_):
    opts = environment.parsed_options
    # a standby was started before its load was known: the config sizes it (a manual `locust -u 8` is left alone)
    if os.environ.get("AUTOTUNE_LOAD_CONFIG") == "-" and CFG.load_users and opts is not None:
        opts.num_users = opts.spawn_rate = CFG.load_users
        opts.run_time = CFG.run_time_s or opts.run_time
    if CFG.host and not environment.host:
        environment.host = CFG.host
    if _role(environment) == "master":
        environment.runner.register_message("autotune_done", lambda msg, **kw: Done.workers.add(msg.data))


@events.quit.add_listener
def _on_quit(exit_code: int, **_):
    """With the embedder loaded, end without the interpreter's teardown: torch's native threads (in gevent's
    thread pool) abort the process at exit now and then ("terminate called without an active exception", exit
    -6) after every result is on disk. Locust fires this last, right before its own sys.exit(exit_code)."""
    if CACHE is not None:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(exit_code)


@events.test_start.add_listener
def _on_start(environment, **_):
    Run.t0 = time.time()
    Run.last_progress = Run.t0
    Run.host = environment.host
    Run.warmup_end = Run.t0 + CFG.warmup_s
    Run.measure_end = Run.warmup_end + CFG.duration_s
    Run.rusage0 = resource.getrusage(resource.RUSAGE_SELF)
    Run.role = _role(environment)
    Run.index = getattr(environment.runner, "worker_index", 0) if Run.role == "worker" else 0
    # the evaluation items first (those earlier levels did not grade first), so the measured load grades them;
    # workers walk the dataset in different orders
    Run.order = task_order([t["id"] for t in CFG.tasks], CFG.eval_first, set(CFG.eval_seen), CFG.seed + Run.index)
    Run.queue = list(range(len(CFG.tasks))) if CFG.once else []
    out = Path(CFG.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if Run.role == "master":  # runs no users: snapshots /metrics, waits for the workers, quits
        gevent.spawn(_master_controller, environment, out)
        return
    Run.suffix = f"-{Run.index}" if Run.role == "worker" else ""
    (out / f"requests{Run.suffix}.jsonl").write_text("")
    (out / f"tasks{Run.suffix}.jsonl").write_text("")
    gevent.spawn(_controller, environment, out)


def _master_controller(environment, out: Path) -> None:
    gevent.sleep(max(0.0, Run.warmup_end - time.time()))
    if CFG.server_metrics:
        scrape(environment.host, out / "metrics-before.txt", CFG.stall_timeout_s)
        _poll(environment)  # the master polls for every worker, until the window's end
        # the window itself, not the window plus the drain
        scrape(environment.host, out / "metrics-after.txt", CFG.stall_timeout_s)
    else:
        gevent.sleep(max(0.0, Run.measure_end - time.time()))
    expected = max(1, environment.runner.worker_count)
    deadline = Run.measure_end + CFG.drain_timeout_s + 15
    while len(Done.workers) < expected and time.time() < deadline:
        gevent.sleep(0.1)
    ru = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (ru.ru_utime - Run.rusage0.ru_utime) + (ru.ru_stime - Run.rusage0.ru_stime)
    (out / "summary-master.json").write_text(json.dumps({  # merged with the workers': its CPU and its poll
        "records": 0, "tasks": 0, "loadgen_cpu_s": cpu, "loadgen_wall_s": time.time() - Run.t0,
        "engine_hung": False, "gauges": gauge_summary(Run.gauge_samples)}))
    environment.runner.quit()


def _phase(t: float) -> str:
    return "warmup" if t < Run.warmup_end else "measure" if t < Run.measure_end else "cooldown"


def _offering(t: float) -> bool:
    """Load is offered through the window and then, untracked (`cooldown`), until every task that started in
    the window has finished: the window's last tasks meet the same concurrency as its first, not a falling one."""
    if t < Run.measure_end:
        return True
    return Run.measured_in_flight > 0 and t < Run.measure_end + CFG.drain_timeout_s and not Run.stopping


def _level_open() -> bool:
    """A capacity level stays open until its verdict can no longer change (autotune.sla)."""
    level, now = CFG.level, time.time()
    if now < Run.warmup_end:
        return True
    met, missed, pending = level_counts([t for t in Run.tasks if t["phase"] == "measure"],
                                        [t for t in Run.open_tasks.values() if t["phase"] == "measure"], now,
                                        level.sla)
    Run.early_stop = early_stop(met + level.prior_met, missed + level.prior_missed, pending, level.target,
                                level.confidence, level.min_tasks)
    return Run.early_stop is None


def _draining() -> bool:
    """The window's tasks are still finishing. A level whose verdict is already a certain fail (in-flight tasks
    that are known misses included) stops here and abandons them as misses (`abandon_on_fail`; never at the
    operating load, whose latencies are objectives)."""
    if Run.measured_in_flight == 0:
        return False
    if CFG.level is not None and CFG.level.abandon_on_fail and (Run.early_stop == "fail" or not _level_open()):
        return Run.early_stop != "fail"
    return True


def _once_busy() -> bool:
    """`once`: every task runs exactly once; the window ends when the last one has finished."""
    if Run.queue or Run.in_flight > 0:
        return True
    Run.early_stop = "every task ran once"
    return False


def _poll(environment) -> None:
    poll_gauges(environment.host, Run.gauge_samples, lambda: time.time() < Run.measure_end and Run.hung_s is None)


def _controller(environment, out: Path) -> None:
    """Snapshot /metrics at the window's start, wait for the window and the drain, write results, quit. Every
    wait ends early when the engine stalls (no progress for stall_timeout_s with requests outstanding)."""
    ok = wait(Run.warmup_end, CFG.stall_timeout_s)
    if ok and Run.role == "local" and CFG.server_metrics:
        scrape(environment.host, out / "metrics-before.txt", CFG.stall_timeout_s)
        gevent.spawn(_poll, environment)
    gevent.spawn(watch_loop, Run.loop_lags, lambda: Run.hung_s is None and not Run.stopping)
    busy = _level_open if CFG.level is not None else _once_busy if CFG.once else None
    ok = ok and wait(Run.measure_end, CFG.stall_timeout_s, busy, step=0.5 if CFG.level else 0.1)
    if ok and time.time() < Run.measure_end:  # a capacity level resolved early: its window ends now
        Run.measure_end = time.time()
    if Run.role == "local" and CFG.server_metrics:  # the server's view of the window itself, not plus the drain
        if ok:
            scrape(environment.host, out / "metrics-after.txt", CFG.stall_timeout_s)
        else:
            (out / "metrics-after.txt").write_text("# not scraped: engine hung\n")
    ok = ok and wait(Run.measure_end + CFG.drain_timeout_s, CFG.stall_timeout_s, _draining, step=0.05)
    Run.stopping = True  # the cooldown load stops offering; what the window started and did not finish is abandoned
    stalled = stall_s(CFG.stall_timeout_s)
    drained_s = time.time() - Run.measure_end
    abandoned_tasks, abandoned_requests = abandon(time.time())
    ru = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (ru.ru_utime - Run.rusage0.ru_utime) + (ru.ru_stime - Run.rusage0.ru_stime)
    wall = time.time() - Run.t0
    summary = {
        "t0": Run.t0, "warmup_end": Run.warmup_end, "measure_end": Run.measure_end,
        "measure_s": Run.measure_end - Run.warmup_end if Run.early_stop else CFG.duration_s,
        "early_stop": Run.early_stop, "drain_s": drained_s,
        "abandoned_in_flight": abandoned_tasks,
        "scheduled_in_window": sum(Run.warmup_end <= t < Run.measure_end for t in Run.scheduled),
        "gauges": gauge_summary(Run.gauge_samples),
        "loop_lag_p99_ms": lag_ms(Run.loop_lags, 99), "loop_lag_max_ms": lag_ms(Run.loop_lags, 100),
        "abandoned_requests": abandoned_requests,
        "loadgen_cpu_s": cpu, "loadgen_wall_s": wall, "loadgen_cpu_share": cpu / wall if wall else 0.0,
        "arrival": CFG.arrival.model_dump(), "standby": os.environ.get("AUTOTUNE_LOAD_CONFIG") == "-",
        "records": len(Run.records), "tasks": len(Run.tasks), "model": Run.model,
        "cache_entries": len(CACHE) if CACHE is not None else None, "engine_hung": stalled is not None,
    }
    if stalled is not None:
        summary["stall_s"], summary["stall_confirmed_ts"] = stalled, Run.hung_ts
    for name, rows in ((f"requests{Run.suffix}.jsonl", Run.records), (f"tasks{Run.suffix}.jsonl", Run.tasks)):
        with (out / name).open("a") as f:
            for rec in rows:
                f.write(json.dumps(rec) + "\n")
    (out / f"summary{Run.suffix}.json").write_text(json.dumps(summary, indent=2))
    # the results are on disk: what still runs is cooldown load or already counted as abandoned, and users blocked
    # on a frozen engine never finish their task; stop them now instead of granting --stop-timeout (seconds/level)
    environment.stop_timeout = 0
    if Run.role == "worker":
        environment.runner.send_message("autotune_done", Run.index)
    else:
        environment.runner.quit()


def _read_stream(resp, rec: dict, parts: list[str], start: float) -> None:
    """The streamed chunks into the record: token stamps, usage, finish reason, an error streamed with HTTP 200."""
    for line in resp.iter_lines():
        Run.last_progress = time.time()  # per streamed line: one float store, cheap
        if not line or not line.startswith(b"data:"):
            continue
        data = line[5:].strip()
        if data == b"[DONE]":
            break
        chunk = json.loads(data)
        if chunk.get("error"):  # vLLM streams request errors (bad constraint...) with HTTP 200
            err = chunk["error"]
            rec["error"] = f"HTTP {err.get('code', 400)} in stream: {err.get('message', '')}"[:400]
            break
        if chunk.get("usage"):
            rec["prompt_tokens"] = chunk["usage"].get("prompt_tokens")
            rec["completion_tokens"] = chunk["usage"].get("completion_tokens")
        for choice in chunk.get("choices") or []:
            if choice.get("finish_reason"):
                rec["finish_reason"] = choice["finish_reason"]
            content = (choice.get("delta") or {}).get("content")
            if content:
                t = time.perf_counter() - start
                if rec["ttft_s"] is None:
                    rec["ttft_s"] = t
                rec["token_ts"].append(t)
                rec["token_counts"].append((chunk.get("usage") or {}).get("completion_tokens"))
                parts.append(content)


def _route(req: dict):
    """Where a call goes: its role's route; else the engine, unless the engine already owes `overflow_at` calls
    and an overflow endpoint is set (then there: a self-hosted queue spilling to an API)."""
    route = CFG.routes.get(role_of(req.get("node")) or "")
    if route is None and CFG.overflow is not None and Run.engine_in_flight >= CFG.overflow_at:
        return CFG.overflow
    return route


def _target(route, payload: dict) -> tuple[str, dict | None]:
    """(url, headers) of a call: the engine's, or its role's own endpoint (the payload's model set to that
    endpoint's, its key from the variable the route names: never the engine's key)."""
    to_api = route.api if route is not None else not CFG.server_metrics  # an engine without /metrics is an API
    if to_api:  # vLLM's per-chunk usage is an extension an API need not accept
        payload["stream_options"] = {"include_usage": True}
    if route is None:
        return "/v1/chat/completions", None
    payload["model"] = route.model
    key = os.environ.get(route.key_var) if route.key_var else None
    return f"{route.url}/v1/chat/completions", {"Authorization": f"Bearer {key}" if key else None}


class ChatUser(HttpUser):
    """Closed loop: one task at a time. Poisson: fire-and-forget task arrivals at rate/users."""

    def wait_time(self):
        return 0

    def on_start(self):
        key = os.environ.get("AUTOTUNE_API_KEY")  # a server started with VLLM_API_KEY / --api-key
        if key:
            self.client.headers["Authorization"] = f"Bearer {key}"
        if Run.model is None:
            Run.model = self.client.get("/v1/models").json()["data"][0]["id"]

    @task
    def next_task(self):
        if CFG.arrival.mode == "poisson":
            self.open_loop(CFG.arrival.rate)
            raise StopUser()
        if not _offering(time.time()) or (CFG.once and not Run.queue):
            raise StopUser()
        self.one_task(None, Run.queue.pop(0) if CFG.once else None)

    def open_loop(self, rate: float) -> None:
        """Walk an absolute, seeded Poisson schedule (this process's share of the rate) whose window holds exactly
        the rate's arrivals: each task starts at its scheduled time, and its latency runs from that time, so a late
        generator shows as lag."""
        users = max(1, CFG.load_users or self.environment.runner.user_count)  # all processes' users
        seed = level_seed(CFG.seed, Run.index, rate, CFG.level.segment if CFG.level is not None else 0)
        for scheduled in window_arrivals(rate / users, Run.t0, (Run.warmup_end, Run.measure_end), seed):
            if not _offering(scheduled):
                return
            Run.scheduled.append(scheduled)
            gevent.sleep(max(0.0, scheduled - time.time()))
            gevent.spawn(self.one_task, scheduled)

    def one_task(self, scheduled: float | None, index: int | None = None):
        n = next(Run.counter) * CFG.processes + Run.index  # unique across load processes
        item = CFG.tasks[Run.order[n % len(Run.order)] if index is None else index]
        item = {**item, "source": {"n": n, "id": item["id"]}}
        send_ts = time.time()
        origin = send_ts if scheduled is None else scheduled  # open loop: the arrival, not the wake-up
        phase = _phase(origin)
        start = {"n": n, "id": item["id"], "phase": phase, "send_ts": send_ts, "scheduled_ts": scheduled,
                 "lag_s": send_ts - origin}
        Run.in_flight += 1
        Run.measured_in_flight += phase == "measure"
        Run.open_tasks[n] = start
        try:
            rec = run_task(APP, item, lambda req: self.chat(req, n, phase), CACHE)
        finally:
            Run.in_flight -= 1
            Run.measured_in_flight -= phase == "measure"
            Run.open_tasks.pop(n, None)
        rec["service_s"] = rec.get("latency_s")
        if rec.get("latency_s") is not None:
            rec["latency_s"] += start["lag_s"]
        Run.tasks.append({**start, **rec})

    def chat(self, req: dict, task_n: int, phase: str) -> dict:
        """One streaming FM call; the record goes to requests.jsonl and back to the DAG executor."""
        payload = {
            "model": Run.model, "messages": req["messages"], "max_tokens": req["max_tokens"],
            "temperature": req["temperature"], "seed": CFG.seed + 16 * task_n + req.get("sample", 0),
            # continuous usage: each chunk says how many tokens are out so far, so ITL is per token (spec decoding
            # streams several tokens per chunk)
            "stream": True, "stream_options": {"include_usage": True, "continuous_usage_stats": True},
        }
        if req.get("structured_outputs"):
            payload["structured_outputs"] = req["structured_outputs"]
        route = _route(req)
        url, headers = _target(route, payload)
        send_ts = time.time()
        start = time.perf_counter()
        rec = {"n": len(Run.records), "task_n": task_n, "node": req.get("node"), "phase": phase,
               "send_ts": send_ts, "ttft_s": None, "token_ts": [], "token_counts": [], "e2e_s": None,
               "prompt_tokens": None,
               "completion_tokens": None, "finish_reason": None, "ok": False, "status": None, "error": None,
               "text": "", "endpoint": route.name if route is not None else "engine"}
        parts: list[str] = []
        Run.open_requests[id(rec)] = rec
        if Run.outstanding == 0:  # the stall clock starts with the first request the engine owes us
            Run.last_progress = time.time()
        Run.outstanding += 1
        Run.engine_in_flight += int(route is None)
        try:
            with self.client.post(url, json=payload, stream=True, catch_response=True, headers=headers,
                                  name=(req.get("node") or "chat").split(".")[0],
                                  timeout=CFG.request_timeout_s) as resp:
                Run.last_progress = time.time()  # any response (headers, an error status) is progress
                rec["status"] = resp.status_code
                if resp.status_code != 200:
                    rec["error"] = f"HTTP {resp.status_code}: {resp.text[:300]}"
                    resp.failure(rec["error"])
                else:
                    _read_stream(resp, rec, parts, start)
                    rec["e2e_s"] = time.perf_counter() - start
                    rec["text"] = "".join(parts)
                    if rec["error"]:
                        resp.failure(rec["error"])
                    elif rec["completion_tokens"] is None:
                        rec["error"] = "stream ended without usage"
                        resp.failure(rec["error"])
                    else:
                        rec["ok"] = True
                        resp.success()
        except Exception as exc:  # any transport error is a failed request, recorded, never raised
            Run.last_progress = time.time()  # an error is an answer too: the engine is not silent
            rec["error"] = f"{type(exc).__name__}: {exc}"[:300]
            rec["e2e_s"] = time.perf_counter() - start
        finally:
            Run.outstanding -= 1
            Run.engine_in_flight -= int(route is None)
            Run.open_requests.pop(id(rec), None)
        Run.records.append(rec)
        return rec
