"""Locust load for an OpenAI-compatible chat server (vLLM), one JSON record per request.

Self-contained (locust + stdlib only), so it also runs by hand:

    AUTOTUNE_LOAD_CONFIG=runs/<study>/trial-0003/load-config.json \
        locust -f autotune/loadgen/locustfile.py --host http://127.0.0.1:8000 --headless -u 8 -r 8

Without AUTOTUNE_LOAD_CONFIG it sends a built-in prompt in closed loop. The config (written by autotune)
holds: requests [{id, messages}], model, max_tokens, temperature, seed, arrival {mode, rate, users},
warmup_s, duration_s, drain_timeout_s, request_timeout_s, out_dir.

Arrival models: `closed` - every user sends its next request when the previous one returns; `poisson` - every
user draws exponential gaps at rate/users and fires requests without waiting (open loop; the superposition
of the users' Poisson processes is Poisson at `rate`). Requests are sent only until the end of the
measurement window; the ones in flight then get `drain_timeout_s` to finish. Results go to out_dir:
requests.jsonl, summary.json, metrics-before.txt / metrics-after.txt (server /metrics snapshots at the start
of the window and after the drain).
"""

from __future__ import annotations

import itertools
import json
import os
import random
import resource
import time
from pathlib import Path

import gevent
from locust import HttpUser, events, task
from locust.exception import StopUser

DEFAULT_CONFIG = {
    "requests": [{"id": "hello", "messages": [{"role": "user", "content": "Say hello in five words."}]}],
    "model": None,  # None: ask the server for its first model
    "max_tokens": 32,
    "temperature": 0.0,
    "seed": 0,
    "arrival": {"mode": "closed", "users": 1},
    "warmup_s": 2.0,
    "duration_s": 10.0,
    "drain_timeout_s": 30.0,
    "request_timeout_s": 120.0,
    "out_dir": "locust-out",
}


def _load_config() -> dict:
    path = os.environ.get("AUTOTUNE_LOAD_CONFIG")
    cfg = dict(DEFAULT_CONFIG)
    if path:
        cfg.update(json.loads(Path(path).read_text()))
    return cfg


CFG = _load_config()


class Run:
    """Shared state of one load run (one per Locust process)."""

    t0 = 0.0
    warmup_end = 0.0
    measure_end = 0.0
    in_flight = 0
    counter = itertools.count()
    order: list[int] = []
    records: list[dict] = []
    rusage0 = None
    model: str | None = CFG["model"]


@events.test_start.add_listener
def _on_start(environment, **_):
    Run.t0 = time.time()
    Run.warmup_end = Run.t0 + CFG["warmup_s"]
    Run.measure_end = Run.warmup_end + CFG["duration_s"]
    Run.rusage0 = resource.getrusage(resource.RUSAGE_SELF)
    Run.order = list(range(len(CFG["requests"])))
    random.Random(CFG["seed"]).shuffle(Run.order)
    out = Path(CFG["out_dir"])
    out.mkdir(parents=True, exist_ok=True)
    (out / "requests.jsonl").write_text("")
    gevent.spawn(_controller, environment, out)


def _scrape(environment, out: Path, name: str) -> None:
    try:
        import urllib.request

        with urllib.request.urlopen(f"{environment.host}/metrics", timeout=10) as resp:
            (out / name).write_bytes(resp.read())
    except OSError as exc:  # the engine may be gone; the summary says so
        (out / name).write_text(f"# scrape failed: {exc}\n")


def _controller(environment, out: Path) -> None:
    """Snapshot /metrics at the window's start, wait for the window and the drain, write results, quit."""
    gevent.sleep(max(0.0, Run.warmup_end - time.time()))
    _scrape(environment, out, "metrics-before.txt")
    gevent.sleep(max(0.0, Run.measure_end - time.time()))
    drain_deadline = time.time() + CFG["drain_timeout_s"]
    while Run.in_flight > 0 and time.time() < drain_deadline:
        gevent.sleep(0.05)
    drained_s = time.time() - Run.measure_end
    _scrape(environment, out, "metrics-after.txt")
    ru = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (ru.ru_utime - Run.rusage0.ru_utime) + (ru.ru_stime - Run.rusage0.ru_stime)
    wall = time.time() - Run.t0
    summary = {
        "t0": Run.t0, "warmup_end": Run.warmup_end, "measure_end": Run.measure_end,
        "measure_s": CFG["duration_s"], "drain_s": drained_s, "abandoned_in_flight": Run.in_flight,
        "loadgen_cpu_s": cpu, "loadgen_wall_s": wall, "loadgen_cpu_share": cpu / wall if wall else 0.0,
        "arrival": CFG["arrival"], "records": len(Run.records), "model": Run.model,
    }
    with (out / "requests.jsonl").open("a") as f:
        for rec in Run.records:
            f.write(json.dumps(rec) + "\n")
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    environment.runner.quit()


class ChatUser(HttpUser):
    """Closed loop: one request at a time. Poisson: fire-and-forget arrivals at rate/users."""

    def wait_time(self):
        return 0

    def on_start(self):
        if Run.model is None:
            Run.model = self.client.get("/v1/models").json()["data"][0]["id"]

    @task
    def next_request(self):
        if time.time() >= Run.measure_end:
            raise StopUser()
        arrival = CFG["arrival"]
        if arrival["mode"] == "poisson":
            users = max(1, self.environment.runner.user_count)
            gevent.sleep(random.expovariate(arrival["rate"] / users))
            if time.time() < Run.measure_end:
                gevent.spawn(self.chat)
        else:
            self.chat()

    def chat(self):
        n = next(Run.counter)
        req = CFG["requests"][Run.order[n % len(Run.order)]]
        payload = {
            "model": Run.model, "messages": req["messages"], "max_tokens": req.get("max_tokens", CFG["max_tokens"]),
            "temperature": CFG["temperature"], "seed": CFG["seed"] + n, "stream": True,
            "stream_options": {"include_usage": True},
        }
        Run.in_flight += 1
        send_ts = time.time()
        start = time.perf_counter()
        rec = {"n": n, "id": req["id"], "phase": "warmup" if send_ts < Run.warmup_end else "measure",
               "send_ts": send_ts, "ttft_s": None, "token_ts": [], "e2e_s": None, "prompt_tokens": None,
               "completion_tokens": None, "ok": False, "status": None, "error": None, "text": ""}
        parts: list[str] = []
        try:
            with self.client.post("/v1/chat/completions", json=payload, stream=True, catch_response=True,
                                  name="chat", timeout=CFG["request_timeout_s"]) as resp:
                rec["status"] = resp.status_code
                if resp.status_code != 200:
                    rec["error"] = f"HTTP {resp.status_code}: {resp.text[:300]}"
                    resp.failure(rec["error"])
                else:
                    for line in resp.iter_lines():
                        if not line or not line.startswith(b"data:"):
                            continue
                        data = line[5:].strip()
                        if data == b"[DONE]":
                            break
                        chunk = json.loads(data)
                        if chunk.get("usage"):
                            rec["prompt_tokens"] = chunk["usage"].get("prompt_tokens")
                            rec["completion_tokens"] = chunk["usage"].get("completion_tokens")
                        for choice in chunk.get("choices") or []:
                            content = (choice.get("delta") or {}).get("content")
                            if content:
                                t = time.perf_counter() - start
                                if rec["ttft_s"] is None:
                                    rec["ttft_s"] = t
                                rec["token_ts"].append(t)
                                parts.append(content)
                    rec["e2e_s"] = time.perf_counter() - start
                    rec["text"] = "".join(parts)
                    if rec["completion_tokens"] is None:
                        rec["error"] = "stream ended without usage"
                        resp.failure(rec["error"])
                    else:
                        rec["ok"] = True
                        resp.success()
        except Exception as exc:  # any transport error is a failed request, recorded, never raised
            rec["error"] = f"{type(exc).__name__}: {exc}"[:300]
            rec["e2e_s"] = time.perf_counter() - start
        finally:
            Run.in_flight -= 1
            Run.records.append(rec)
