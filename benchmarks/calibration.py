"""Do the intervals a bundle states hold? Re-measure an exported config on K fresh engines and count how often
each re-measured value falls inside the interval the bundle states for it.

    .venv/bin/autotune export --study quickstart --run-dir runs
    .venv/bin/python benchmarks/calibration.py --export exports/quickstart/v1 --windows 5

Each window is the tuner's own trial (`run_trial` through nightly's `measure_window`): capacity at SLA by
open-loop levels, p95 task latency at the operating load, quality on the workload's fixed evaluation set, every
window on a freshly launched engine (launch-to-launch variance is in every window). The capacity levels start
from the bundle's capacity, as a study's own repeat windows do.

Two intervals per metric, both in `bundle.json`:
- `confidence_intervals_95`: where the config's mean lies (a t-interval from the study's pooled window noise);
  one fresh window falls outside it more often than 5 % by design;
- `prediction_intervals_95`: where one more fresh window falls (sqrt(1 + 1/n) wider): the promise to a user
  who deploys the bundle and measures it once.

Goal (issue 21): >= 90 % coverage for each of p95 at load, capacity and quality. Coverage is printed with its
Clopper-Pearson interval (K windows cannot prove 90 %; they can refute it), and with the factor by which each
interval would have to widen, on the scale it was built on, for every window to fall inside. The window-to-window
spread of capacity (max / min, and the coefficient of variation) is the run-to-run spread issue 21 asks <= 10 %.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from outcome import DEFAULT_SPACE, Side, measure_outcome  # noqa: E402
from outcome_sides import from_bundle  # noqa: E402

METRICS = ("capacity_tps", "p95_task_ms_at_load", "quality")
LOG_SCALE = {"capacity_tps", "p95_task_ms_at_load"}  # the window noise is modelled on the log scale
GOAL = 0.9


def coverage(values: list[float], interval: list[float] | None) -> dict[str, Any]:
    """How many values lie in [low, high], the Clopper-Pearson 95 % interval of that share, and the factor by
    which the interval (about its point, on `log` or linear scale, each side apart) must widen to hold them all."""
    from scipy.stats import binomtest

    xs = [v for v in values if v == v]
    if not interval or not xs or any(not math.isfinite(b) for b in interval[1:]):
        return {"n": len(xs), "inside": None, "share": math.nan, "ci": (math.nan, math.nan), "widen": math.nan}
    point, low, high = interval
    inside = sum(low <= v <= high for v in xs)
    ci = binomtest(inside, len(xs)).proportion_ci(method="exact")
    return {"n": len(xs), "inside": inside, "share": inside / len(xs), "ci": (ci.low, ci.high),
            "widen": widen_needed(xs, point, low, high)}


def widen_needed(xs: list[float], point: float, low: float, high: float) -> float:
    """max over values of (distance from the point) / (the interval's half-width on that side); <= 1: all inside.
    Distances on the log scale when every number is positive (the bundle's window intervals are built there)."""
    log = min(point, low, *xs) > 0
    f = math.log if log else float

    def need(v: float) -> float:
        side = f(high) - f(point) if v >= point else f(point) - f(low)
        gap = abs(f(v) - f(point))
        return gap / side if side > 0 else (math.inf if gap > 0 else 0.0)

    return max(need(v) for v in xs)


def spread(values: list[float]) -> dict[str, float]:
    import numpy as np

    xs = np.array([v for v in values if v == v and v > 0])
    if len(xs) < 2:
        return {"ratio": math.nan, "cv": math.nan, "geo_mean": math.nan}
    return {"ratio": float(xs.max() / xs.min()), "cv": float(xs.std(ddof=1) / xs.mean()),
            "geo_mean": float(np.exp(np.log(xs).mean()))}


def _fmt(x: float, digits: int = 3) -> str:
    return "n/a" if x is None or x != x else f"{x:.{digits}g}"


def render(bundle: dict[str, Any], windows: list, meta: dict[str, Any]) -> str:
    ok = [w for w in windows if w.ok]
    lines = [
        f"# Calibration: do a bundle's intervals hold on fresh engines? ({meta['created'][:10]})", "",
        f"Bundle `{meta['export']}` (study `{bundle.get('study')}`, trial {bundle.get('trial')}, "
        f"{bundle.get('windows')} window(s) in the study), re-measured on {len(windows)} freshly launched engines "
        f"({len(ok)} measured, {len(windows) - len(ok)} failed: "
        f"{'; '.join(w.failure for w in windows if not w.ok) or 'none'}). Engine {meta['engine_version']}, "
        f"space `{meta['space']}`, windows under `{meta['out_dir']}`.", "",
        "| metric | bundle value | stated 95 % CI (mean) | inside | stated 95 % PI (one launch) | inside "
        "| widen PI to hold all | re-measured |", "|---|---|---|---|---|---|---|---|"]
    verdicts = []
    for m in METRICS:
        values = [float(w.metrics.get(m, math.nan)) for w in ok]
        ci, pi = bundle.get("confidence_intervals_95", {}).get(m), bundle.get("prediction_intervals_95", {}).get(m)
        c_ci, c_pi = coverage(values, ci), coverage(values, pi)

        def cell(c: dict[str, Any]) -> str:
            if c["inside"] is None:
                return "no interval"
            return f"{c['inside']}/{c['n']} (95 % CI {c['ci'][0]:.2f}-{c['ci'][1]:.2f})"

        def iv(x: list[float] | None) -> str:
            return f"[{_fmt(x[1])}, {_fmt(x[2])}]" if x else "none"

        value = bundle.get("metrics", {}).get(m, math.nan)
        lines.append(f"| {m} | {_fmt(value)} | {iv(ci)} | {cell(c_ci)} | {iv(pi)} | {cell(c_pi)} | "
                     f"x{_fmt(c_pi['widen'], 2)} | {', '.join(_fmt(v) for v in values)} |")
        met = c_pi["inside"] is not None and c_pi["share"] >= GOAL
        verdicts.append(f"- `{m}`: {'met' if met else 'NOT met'} ({cell(c_pi)} inside the prediction interval"
                        + ("" if met or c_pi["inside"] is None else
                           f"; it would hold every window {_fmt(c_pi['widen'], 2)}x wider") + ")")
    caps = spread([float(w.metrics.get("capacity_tps", math.nan)) for w in ok])
    lines += ["", f"## Goal: >= {GOAL:.0%} coverage per metric", "", *verdicts, "",
              f"Capacity over the {len(ok)} fresh engines: geometric mean {_fmt(caps['geo_mean'])} tasks/s, "
              f"max/min x{_fmt(caps['ratio'])}, coefficient of variation {_fmt(caps['cv'] * 100, 2)} % "
              "(issue 21 asks a run-to-run spread <= 10 %).", ""]
    levels = [f"- {w.label}: " + (" ".join(f"{r['rate']:.3g}{'+' if r['passed'] else '-'}"
                                           + ("(cont.)" if r.get("segment") else "")
                                           for r in meta["levels"].get(w.label, [])) or "no levels")
              for w in windows]
    lines += ["Levels per window (tasks/s, + held / - missed; (cont.): a continuation window of the level before "
              "it, judged with it):", "", *levels, ""]
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--export", type=Path, required=True, help="an exported bundle directory (exports/<study>/v<N>)")
    ap.add_argument("--space", type=Path, default=DEFAULT_SPACE, help="the study's space (default: quickstart)")
    ap.add_argument("--workload", type=Path, help="the workload (default: the space's)")
    ap.add_argument("--windows", type=int, default=5, help="fresh-engine windows (default 5)")
    ap.add_argument("--run-dir", type=Path, default=Path("runs"), help="windows go under <run-dir>/calibration-*")
    ap.add_argument("--out", type=Path, default=REPO / "reports" / "benchmarks" / "calibration.md")
    ap.add_argument("--quiet", action="store_true", help="no phase lines on stderr")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.windows < 1:
        raise SystemExit("calibration: --windows must be >= 1")
    import dataclasses

    from autotune.engines.process import EngineRegistry
    from autotune.engines.vllm import VLLMEngine
    from autotune.measure import CapacityPrior
    from autotune.search.inputs import trial_inputs
    from autotune.search.study import SearchOptions, load_inputs

    bundle = json.loads((args.export / "bundle.json").read_text())
    config, source = from_bundle(args.export)
    space, workload, wl_path = load_inputs(SearchOptions(space_file=args.space, workload_file=args.workload))
    m = bundle.get("metrics", {})
    prior = [CapacityPrior(m["capacity_tps"], m["capacity_estimate"], config.server.model_dump(mode="json"))] \
        if m.get("capacity_tps") and m.get("capacity_estimate") else []
    inputs = dataclasses.replace(trial_inputs(space, workload, wl_path), capacity_priors=prior)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    out_dir = (args.run_dir / f"calibration-{stamp}").resolve()
    engine = VLLMEngine(space.engine, EngineRegistry(args.run_dir.resolve() / "engines"))
    print(f"calibration: {source}, {args.windows} fresh-engine windows", flush=True)
    runs = measure_outcome([Side("fresh", config, source)], inputs, out_dir, args.windows, engine=engine,
                           say=lambda line: print(line, flush=True), quiet=args.quiet)
    windows = runs[0].windows
    levels = {}
    for w in windows:
        path = out_dir / w.label / "capacity_levels.json"
        levels[w.label] = json.loads(path.read_text()) if path.is_file() else []
    meta = {"created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "export": str(args.export),
            "space": str(args.space), "engine_version": runs[0].version or "unknown", "out_dir": str(out_dir),
            "levels": levels}
    text = render(bundle, windows, meta)
    print()
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(f"written: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
