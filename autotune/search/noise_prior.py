"""A host's launch-to-launch noise, measured once and pooled into every study on that host.

A study's own noise rests on the few configs it measured twice (the warm start's one noise window: 1 degree of
freedom, so a 95 % t interval is 12.7 standard errors wide, and `benchmarks/calibration.py` found the bundle's
intervals 8x wider than the spread they cover). The launch-to-launch spread of a config's capacity and latency on
one host, engine and workload barely depends on the config (the pooled model already assumes one spread for all),
so a measurement with many degrees of freedom made once (the tabular benchmark's repeats, or a calibration run)
makes every later study's intervals as narrow as the noise is.

`noise-prior.json` in a run dir holds it: per metric the sd of one window (of log values when `log`) and its
degrees of freedom, with the host (CPU model, cores), the engine version and the workload it was measured on.
Priors measured on known hosts ship in the repository's `noise_priors/` (one file per host and workload). A
study adopts the run dir's, else the newest shipped one, when the host and the workload's name match, and records
it (`noise_prior`), so the intervals it prints can be reproduced; a trial on another engine version drops it.
Its windows were measured at the recording workload's level length, which may differ from the study's: a prior
from shorter levels is wider, so erring safe.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from autotune.measure import Noise

FILE = "noise-prior.json"
SHIPPED = Path(__file__).resolve().parents[2] / "noise_priors"  # the repository's, measured on known hosts
SCHEMA = 1


def host() -> dict[str, Any]:
    """This machine as the prior names it: the CPU model and the core count."""
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": model, "cores": os.cpu_count() or 0}


def from_pairs(pairs: dict[str, list[tuple[float, float]]]) -> dict[str, dict[str, float]]:
    """Per metric, the sd of one window from repeat pairs of configs: sqrt(sum (log b - log a)^2 / 2n) with n
    degrees of freedom (each pair's two windows give one). Pairs with a non-positive value are left out (a
    capacity of 0 is censored, not a spread)."""
    out = {}
    for metric, xs in pairs.items():
        d = [math.log(b / a) for a, b in xs if a > 0 and b > 0 and math.isfinite(a) and math.isfinite(b)]
        if d:
            out[metric] = {"sd": float(math.sqrt(np.sum(np.square(d)) / (2 * len(d)))), "df": len(d), "log": True}
    return out


def write_prior(run_dir: Path, metrics: dict[str, dict[str, float]], workload: dict[str, Any], engine_version: str,
                source: str) -> Path:
    path = Path(run_dir) / FILE
    path.write_text(json.dumps({"schema": SCHEMA, "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                                "source": source, "host": host(), "engine_version": engine_version,
                                "workload": workload, "metrics": metrics}, indent=2))
    return path


def adopt(run_dir: Path, workload_name: str, shipped: Path = SHIPPED) -> dict[str, Any] | None:
    """The run dir's prior, else the newest shipped one, measured on this host for this workload; else None."""
    def matching(path: Path) -> dict[str, Any] | None:
        try:
            prior = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        ok = prior.get("schema") == SCHEMA and prior.get("host") == host() \
            and (prior.get("workload") or {}).get("name") == workload_name
        return prior if ok else None

    if (own := matching(Path(run_dir) / FILE)) is not None:
        return own
    found = [p for path in Path(shipped).rglob("*.json") if (p := matching(path)) is not None]
    return max(found, key=lambda p: p.get("created", "")) if found else None


def study_prior(study) -> dict[str, Noise]:
    """The prior the study adopted, as Noise per metric; none when a complete trial ran on another engine."""
    prior = study.user_attrs.get("noise_prior")
    if not prior:
        return {}
    versions = {t.user_attrs.get("engine_version") for t in study.get_trials(deepcopy=False)
                if t.state.name == "COMPLETE" and t.user_attrs.get("engine_version")}
    if versions and versions != {prior.get("engine_version")}:
        return {}
    return {m: Noise(float(v["sd"]), int(v["df"]), bool(v["log"])) for m, v in prior.get("metrics", {}).items()}


def pooled(noise: dict[str, Noise], prior: dict[str, Noise]) -> dict[str, Noise]:
    """Each metric's study noise pooled with the prior's (sums of squares and degrees of freedom added) when both
    are on the same scale; the prior alone where the study has none."""
    out = dict(noise)
    for metric, p in prior.items():
        own = noise.get(metric)
        if own is None or own.log != p.log or not math.isfinite(p.sd) or p.df <= 0:
            continue
        if not own.known:
            out[metric] = p
            continue
        df = own.df + p.df
        out[metric] = Noise(math.sqrt((own.sd ** 2 * own.df + p.sd ** 2 * p.df) / df), df, own.log)
    return out
