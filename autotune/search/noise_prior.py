"""A host's launch-to-launch noise, measured once and pooled into every study on that host.

A study's own noise rests on the few configs it measured twice (the warm start's one noise window: 1 degree of
freedom, so a 95 % t interval's half-width is 12.7 standard errors, and `benchmarks/calibration.py` found the bundle's
intervals 8x wider than the spread they cover). The launch-to-launch spread of a config's capacity and latency on
one host, engine and workload barely depends on the config (the pooled model already assumes one spread for all),
so a measurement with many degrees of freedom made once (the tabular benchmark's repeats, or a calibration run)
makes every later study's intervals as narrow as the noise is.

`noise-prior.json` in a run dir holds it: per metric the sd of one window (of log values when `log`) and its
degrees of freedom, with the host (CPU model, cores), the engine version and the workload it was measured on.
Priors measured on known hosts may ship in the repository's `noise_priors/` (none does yet). A study adopts the
run dir's, else the newest shipped one, when the host and the workload's name match and the prior's levels were no
longer than the study's (shorter levels are noisier: the prior errs wide), and records it (`noise_prior`), so the
intervals it prints can be reproduced; a trial on another engine version drops it.
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


def from_pairs(pairs: dict[str, list[tuple[float, float]]],
               resolution: dict[str, float] | None = None) -> dict[str, dict[str, float]]:
    """Per metric, the sd of one window from repeat pairs of configs: sqrt(sum (log b - log a)^2 / 2n) with n
    degrees of freedom (each pair's two windows give one). Pairs with a non-positive value are left out (a
    capacity of 0 is censored, not a spread). A metric read off a grid (`resolution`: capacity's tolerance) has
    each pair's squared difference floored at twice the grid's quantization variance, (log(1 + w))^2 / 12 per
    window, as the study's own noise model floors it: two repeats on one grid step are not zero noise."""
    out = {}
    for metric, xs in pairs.items():
        floor = 2 * math.log1p((resolution or {}).get(metric, 0.0)) ** 2 / 12
        d2 = [max(math.log(b / a) ** 2, floor) for a, b in xs
              if a > 0 and b > 0 and math.isfinite(a) and math.isfinite(b)]
        if d2:
            out[metric] = {"sd": float(math.sqrt(np.sum(d2) / (2 * len(d2)))), "df": len(d2), "log": True}
    return out


def write_prior(run_dir: Path, metrics: dict[str, dict[str, float]], workload: dict[str, Any], engine_version: str,
                source: str) -> Path:
    path = Path(run_dir) / FILE
    path.write_text(json.dumps({"schema": SCHEMA, "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                                "source": source, "host": host(), "engine_version": engine_version,
                                "workload": workload, "metrics": metrics}, indent=2))
    return path


def adopt(run_dir: Path, workload_name: str, shipped: Path = SHIPPED,
          level_s: float | None = None) -> dict[str, Any] | None:
    """The run dir's prior, else the newest shipped one, measured on this host for this workload's name, on levels
    no longer than the study's (`level_s`: shorter levels are noisier, so the prior errs wide, never narrow);
    else None."""
    def matching(path: Path) -> dict[str, Any] | None:
        try:
            prior = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        wl = prior.get("workload") or {}
        ok = prior.get("schema") == SCHEMA and prior.get("host") == host() and wl.get("name") == workload_name \
            and (level_s is None or wl.get("level_s", math.inf) <= level_s)
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
