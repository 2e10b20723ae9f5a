"""Side measurements of a load run, next to the load itself: engine gauges polled through the window and the
event loop's own lag. They run as greenlets in the Locust process; the summaries are pure."""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import gevent

from autotune.engines import gauges

GAUGE_KEYS = (("vllm:kv_cache_usage_perc", "server_kv_cache_usage"), ("vllm:num_requests_running", "server_running"),
              ("vllm:num_requests_waiting", "server_waiting"))


def poll_gauges(host: str, samples: list[dict[str, float]], keep_going: Callable[[], bool]) -> None:
    """Engine load through the window at ~1 Hz (KV-cache usage, running, waiting): a scrape after the window
    would read an idle engine."""
    while keep_going():
        try:
            with urllib.request.urlopen(f"{host}/metrics", timeout=2.0) as resp:
                samples.append(gauges(resp.read().decode(errors="replace")))
        except (OSError, ValueError):
            pass
        gevent.sleep(1.0)


def server_tokens(host: str, timeout_s: float) -> float | None:
    """vLLM's generation-token counter, or None when /metrics does not answer within `timeout_s`."""
    try:
        with urllib.request.urlopen(f"{host}/metrics", timeout=timeout_s) as resp:
            text = resp.read().decode(errors="replace")
    except OSError:
        return None
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("vllm:generation_tokens_total") and " " in line)


def scrape(host: str, path: Path, stall_timeout_s: float) -> None:
    """The engine's /metrics text into `path`, or a comment saying why not (the engine may be gone)."""
    try:
        # bounded by the stall timeout: a frozen engine accepts the connection and never answers
        with urllib.request.urlopen(f"{host}/metrics", timeout=min(10.0, stall_timeout_s)) as resp:
            path.write_bytes(resp.read())
    except OSError as exc:
        path.write_text(f"# scrape failed: {exc}\n")


def watch_loop(lags: list[float], keep_going: Callable[[], bool]) -> None:
    """The event loop's own lag: how late a 50 ms sleep wakes up. CPU work on the loop (CPU repair, JSON
    parsing) delays every stream's timestamps by this much; it is recorded, so a distorted window shows."""
    while keep_going():
        t = time.perf_counter()
        gevent.sleep(0.05)
        lags.append(time.perf_counter() - t - 0.05)


def lag_ms(lags: list[float], q: float) -> float | None:
    ordered = sorted(lags)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))] * 1000.0 if ordered else None


def gauge_summary(samples: list[dict[str, float]]) -> dict[str, float]:
    """Mean and max of every gauge over the window's samples."""
    out: dict[str, float] = {}
    for name, key in GAUGE_KEYS:
        values = [g[name] for g in samples if name in g]
        if values:
            out[f"{key}_mean"], out[f"{key}_max"] = sum(values) / len(values), max(values)
    return out
