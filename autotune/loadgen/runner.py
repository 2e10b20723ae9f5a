"""Run the shipped locustfile against an engine and read back its per-request records."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from autotune.config import ClientConfig, WorkloadConfig
from autotune.engines import flush_log, start_group, terminate_group
from autotune.errors import EngineHung, LoadGenError
from autotune.fmware import AppConfig
from autotune.loadgen.launch import LOCUSTFILE, clean_env, key_env
from autotune.loadgen.load_config import LoadConfig
from autotune.loadgen.records import read_jsonl
from autotune.loadgen.standby import StandbyPool

APP_FIELDS = {f.name for f in fields(AppConfig)}


@dataclass
class LoadResult:
    records: list[dict[str, Any]]  # one per FM call
    tasks: list[dict[str, Any]]  # one per application task
    summary: dict[str, Any]
    metrics_before: str
    metrics_after: str
    out_dir: Path


def app_config(workload: WorkloadConfig, client: ClientConfig, examples: list[dict[str, Any]]) -> dict[str, Any]:
    """The client knobs + the workload's prompts, as fmware.AppConfig fields. A client knob named like an AppConfig
    field passes through as it is (a new one needs no line here); the rest is the workload's or derived."""
    passed = {k: v for k, v in client.model_dump().items() if k in APP_FIELDS}
    return {
        **passed,
        "fields": [f.name for f in workload.fields],
        "cache_threshold": client.cache_threshold if client.semantic_cache else None,
        "max_tokens": client.max_tokens or workload.max_tokens,
        "temperature": workload.temperature if client.temperature is None else client.temperature,
        "seed": workload.seed,
        "system": workload.prompt.system,
        "examples": examples if client.prompt_variant == "few_shot" else [],
        "labels": {f.name: list(f.labels) for f in workload.fields if f.labels},
    }


def build_load_config(workload: WorkloadConfig, client: ClientConfig, tasks: list[dict[str, Any]],
                examples: list[dict[str, Any]], model: str, out_dir: Path, eval_first: int = 0,
                server_metrics: bool = True, routes: dict[str, Any] | None = None) -> LoadConfig:
    return LoadConfig(
        tasks=tasks, app=app_config(workload, client, examples), model=model, seed=workload.seed,
        arrival=workload.arrival.model_dump(), warmup_s=workload.warmup_s, duration_s=workload.duration_s,
        drain_timeout_s=workload.drain_timeout_s, request_timeout_s=workload.request_timeout_s,
        stall_timeout_s=workload.stall_timeout_s, processes=workload.processes, out_dir=str(out_dir),
        eval_first=eval_first, server_metrics=server_metrics,
        routes={role: r for role, r in (routes or {}).items() if role != "overflow"},
        overflow=(routes or {}).get("overflow"), overflow_at=client.overflow_at or 8)


def locust_argv(url: str, cfg: LoadConfig) -> list[str]:
    """One Locust process, or with `processes` > 1 Locust's distributed mode on this host (a master that
    runs no users plus N worker processes), for loads one process (one core) cannot generate."""
    users = cfg.users()
    extra = ["--processes", str(cfg.processes)] if cfg.processes > 1 else []
    return [
        sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--host", url, "--headless",
        "-u", str(users), "-r", str(users), "--run-time", f"{cfg.backstop_s()}s", "--stop-timeout", "5",
        "--only-summary", "--exit-code-on-error", "0", "--loglevel", "WARNING", *extra,
    ]


def run_load(url: str, cfg: LoadConfig, out_dir: Path, on_tick: Callable[[], None] | None = None,
             api_key: str | dict[str, str] | None = None, standbys: StandbyPool | None = None) -> LoadResult:
    """Run Locust in its own process group (a standby from `standbys` when one is free: a single process, the
    same api_key); any failure becomes LoadGenError quoting its output, a frozen engine (the load generator's
    no-progress watchdog fired) EngineHung."""
    out_dir.mkdir(parents=True, exist_ok=True)
    # users, backstop and host travel in the config too: a standby started before they were known applies them
    cfg = cfg.with_(load_users=cfg.users(), run_time_s=cfg.backstop_s(), host=url)
    cfg_path = out_dir / "load-config.json"
    cfg_path.write_text(cfg.model_dump_json(indent=2))
    env = {**clean_env(), "AUTOTUNE_LOAD_CONFIG": str(cfg_path.resolve())}
    env.update(key_env(api_key))  # through the environment, never the config file on disk
    log_path = out_dir / "locust.log"
    argv = locust_argv(url, cfg)
    log_path.unlink(missing_ok=True)
    for stale in [*out_dir.glob("summary*.json"), *out_dir.glob("tasks*.jsonl"), *out_dir.glob("requests*.jsonl")]:
        stale.unlink()  # a previous run's files must not be merged into this one
    # own group, dies with us even on kill -9 (PDEATHSIG). It runs in its output folder: Locust reads a
    # locust.conf or pyproject.toml from its working directory, and the user's project files must not change
    # (or, half-edited, break) the load a trial measures
    proc = None
    fits = standbys is not None and standbys.api_key == api_key and cfg.processes <= 1
    standby = standbys.take() if fits else None
    if standby is not None:
        proc = standby.go(cfg_path)
        if proc is None:
            standby.close()
        else:
            log_path = standby.log_path
    if proc is None:
        proc = start_group(argv, env, log_path, cwd=out_dir.resolve())
    limit = cfg.warmup_s + cfg.duration_s + cfg.drain_timeout_s + 90  # backstop: locust itself stuck
    try:
        code = _wait(proc, limit, on_tick)
    except subprocess.TimeoutExpired:
        terminate_group(proc.pid, 5.0)
        raise LoadGenError(f"locust did not finish within {limit:.0f} s (hung engine?)") from None
    except BaseException:  # Ctrl-C / SIGTERM: never leave the load generator behind
        terminate_group(proc.pid, 5.0)
        raise
    if log_path != out_dir / "locust.log":  # a standby's log, kept with the load it ran
        flush_log(proc)
        shutil.copyfile(log_path, out_dir / "locust.log")
    summaries = sorted(out_dir.glob("summary*.json"))
    summary = merge_summaries([json.loads(p.read_text()) for p in summaries]) if summaries else {}
    if summary.get("engine_hung"):  # checked first: the frozen engine is the cause of whatever else went wrong
        raise EngineHung(f"no token or response from the engine for {summary.get('stall_s', 0):.1f} s while "
                         f"requests were waiting (stall_timeout_s {cfg.stall_timeout_s:g} s)")
    if code != 0 or not summaries:
        flush_log(proc)
        tail = log_path.read_text(errors="replace").strip().splitlines()[-5:]
        raise LoadGenError(f"locust exited with code {code}: {' | '.join(tail)[-400:]}")
    return LoadResult(
        records=[r for p in sorted(out_dir.glob("requests*.jsonl")) for r in read_jsonl(p, missing_ok=True)],
        tasks=[t for p in sorted(out_dir.glob("tasks*.jsonl")) for t in read_jsonl(p, missing_ok=True)],
        summary=summary,
        metrics_before=_read(out_dir / "metrics-before.txt"),
        metrics_after=_read(out_dir / "metrics-after.txt"),
        out_dir=out_dir,
    )


def _wait(proc: subprocess.Popen, limit: float, on_tick: Callable[[], None] | None) -> int:
    started = last_tick = time.monotonic()
    while True:
        try:
            return proc.wait(timeout=0.05)  # a level's next step waits on this exit: notice it within 50 ms
        except subprocess.TimeoutExpired:
            now = time.monotonic()
            if now - started >= limit:
                raise
            if on_tick and now - last_tick >= 0.5:
                last_tick = now
                on_tick()


def merge_summaries(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """One summary for all load processes: CPU and counts add up, the wall clock is the longest."""
    if len(parts) == 1:
        return parts[0]
    merged = dict(parts[0])
    for key in ("loadgen_cpu_s", "records", "tasks", "abandoned_in_flight", "abandoned_requests",
                "scheduled_in_window"):
        merged[key] = sum(p.get(key) or 0 for p in parts)
    merged["loadgen_wall_s"] = max(p.get("loadgen_wall_s", 0.0) for p in parts)
    merged["drain_s"] = max(p.get("drain_s", 0.0) for p in parts)
    merged["measure_s"] = max(p.get("measure_s", 0.0) for p in parts)
    merged["loadgen_cpu_share"] = merged["loadgen_cpu_s"] / merged["loadgen_wall_s"] if merged["loadgen_wall_s"] else 0
    merged["processes"] = len(parts)
    merged["gauges"] = next((p["gauges"] for p in parts if p.get("gauges")), {})  # the master's poll
    for key in ("loop_lag_p99_ms", "loop_lag_max_ms"):
        merged[key] = max((p[key] for p in parts if p.get(key) is not None), default=None)
    merged["engine_hung"] = any(p.get("engine_hung") for p in parts)  # one frozen worker view is enough
    stalls = [p["stall_s"] for p in parts if p.get("stall_s") is not None]
    if stalls:
        merged["stall_s"] = max(stalls)
    return merged


def _read(path: Path) -> str:
    return path.read_text() if path.is_file() else ""

