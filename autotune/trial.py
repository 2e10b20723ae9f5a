"""One trial: launch the engine for the server part, drive the load, score, and turn records into metrics."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autotune.config.space import SpaceConfig
from autotune.config.workload import WorkloadConfig
from autotune.engines import prometheus
from autotune.engines.vllm import VLLMEngine
from autotune.knobs import TrialConfig
from autotune.loadgen.runner import LoadResult, load_config, run_load
from autotune.metrics import mean_quality, summarize, usd_per_1k
from autotune.secrets import redact_argv
from autotune.workloads import extraction

Phase = Callable[[str], None]


@dataclass
class TrialResult:
    metrics: dict[str, float]
    engine_version: str
    argv: list[str]
    files: dict[str, Path] = field(default_factory=dict)  # artifact name -> path


def score_records(records: list[dict[str, Any]], references: dict[str, dict[str, str]]) -> None:
    """Attach the task score to every successful record (in place)."""
    for rec in records:
        if rec.get("ok") and rec["id"] in references:
            rec["score"] = extraction.score(rec.get("text", ""), references[rec["id"]])


def trial_metrics(load: LoadResult, space: SpaceConfig, workload: WorkloadConfig, startup_s: float,
                  server: dict[str, float]) -> dict:
    """All metrics of a finished load run: client side, quality, cost, server-side deltas, overheads."""
    window = float(load.summary.get("measure_s") or workload.duration_s)
    m = summarize(load.records, window, space.sla.model_dump())
    scores = [r["score"] for r in load.records if r.get("phase") == "measure" and "score" in r]
    m["quality"] = mean_quality(scores)
    m["usd_per_1k_requests"] = usd_per_1k(space.hardware.usd_per_hour, m["requests_per_s"])
    arrival = workload.arrival
    m["target_rate_rps"] = arrival.rate if arrival.mode == "poisson" and arrival.rate else math.nan
    m["loadgen_cpu_s"] = float(load.summary.get("loadgen_cpu_s", math.nan))
    m["loadgen_cpu_share"] = float(load.summary.get("loadgen_cpu_share", math.nan))
    m.update(server)
    m["startup_s"] = startup_s
    m["measure_s"] = window
    return m


def run_trial(
    config: TrialConfig, space: SpaceConfig, workload: WorkloadConfig, requests: list[dict[str, Any]],
    references: dict[str, dict[str, str]], engine: VLLMEngine, trial_dir: Path, phase: Phase,
) -> TrialResult:
    """Raises TrialError subclasses on launch/load failure; the engine never outlives this call."""
    trial_dir.mkdir(parents=True, exist_ok=True)
    (trial_dir / "resolved-config.json").write_text(json.dumps(config.model_dump(), indent=2))
    files = {"resolved-config.json": trial_dir / "resolved-config.json", "engine.log": trial_dir / "engine.log"}
    phase("launching")
    handle = engine.launch(config.server, trial_dir / "engine.log")
    try:
        (trial_dir / "engine-argv.json").write_text(json.dumps(redact_argv(handle.argv), indent=2))
        files["engine-argv.json"] = trial_dir / "engine-argv.json"
        cfg = load_config(workload, config.client, requests, handle.served_model, trial_dir / "load")
        phase("warming")
        t0 = time.monotonic()
        load = run_load(handle.url, cfg, trial_dir / "load", on_tick=lambda: _tick(phase, t0, workload))
    finally:
        phase("stopping")
        engine.stop(handle)
    phase("scoring")
    score_records(load.records, references)
    before = prometheus.parse(load.metrics_before) if load.metrics_before else {}
    after = prometheus.parse(load.metrics_after) if load.metrics_after else {}
    server = prometheus.window_deltas(before, after)
    metrics = trial_metrics(load, space, workload, handle.startup_s, server)
    rec_path = trial_dir / "requests.jsonl"
    rec_path.write_text("".join(json.dumps(r) + "\n" for r in load.records))
    deltas_path = trial_dir / "metrics-deltas.json"
    deltas_path.write_text(json.dumps({
        "window": server,
        "ttft_histogram": prometheus.histogram_delta(before, after, "vllm:time_to_first_token_seconds"),
        "loadgen": load.summary,
    }, indent=2, default=str))
    files.update({"requests.jsonl": rec_path, "metrics-deltas.json": deltas_path,
                  "load-config.json": trial_dir / "load" / "load-config.json"})
    return TrialResult(metrics=metrics, engine_version=handle.version, argv=redact_argv(handle.argv), files=files)


def _tick(phase: Phase, t0: float, workload: WorkloadConfig) -> None:
    elapsed = time.monotonic() - t0
    if elapsed < workload.warmup_s:
        phase("warming")
    elif elapsed < workload.warmup_s + workload.duration_s:
        phase("measuring")
    else:
        phase("draining")
