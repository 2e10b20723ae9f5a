"""What tuning buys over what users run today: the recommended config against two `vllm serve` baselines, side by
side, in one run, on the same model, workload and SLA, measured by the tuner's own trial machinery (`run_trial`:
capacity at SLA by open-loop levels, latency at the operating load, quality on the workload's fixed evaluation
set).

    .venv/bin/python benchmarks/outcome.py --export exports/quickstart/v1
    .venv/bin/python benchmarks/outcome.py --study quickstart --run-dir runs --pick cheapest-within-quality

The three sides:
1. **naive** (baseline 2): vLLM's defaults serving the application as a developer first writes it: one call,
   JSON, zero-shot, no constraint, no repair, no cache (`NAIVE_APP`; `--baseline-client k=v,...` on top).
2. **defaults** (baseline 1): vLLM's defaults serving the recommended config's own application. Between 1 and 2
   only the application differs; between it and the recommended config only the engine.
3. **recommended**: the config an exported bundle holds (`--export DIR`), or the one `autotune export --pick
   POLICY` would choose from a finished study (`--study NAME --run-dir DIR --pick ...`, export's own
   `candidates` + `pick`).

vLLM's defaults: the engine with only the model (and the served name, host and port, which the tool always
gives): no dtype, no eager mode, no block size, no max-num-seqs, no KV flags, no seed. On CPU vLLM does not start
without `VLLM_CPU_KVCACHE_SPACE` (it would reserve 0.92 of the NUMA node's memory), so a defaults engine gets the
space's `kv_cache_space_gb` there, plus the engine env the space gives (and the tuner's own
`VLLM_SERVER_DEV_MODE=1`, which only opens `/reset_prefix_cache` between levels): defaults = the minimum that
starts. `--baselines` runs one baseline only.

Each side is measured `--windows` times (default 2), every window on a freshly launched engine, in ABCABC order so
drift hits every side. Printed and written to `--out` (reports/benchmarks/outcome.md): per side the capacity at SLA
(mean and per window), $ per 1k tasks at that capacity, p95 task latency at the operating load, quality with a
bootstrap interval over the evaluation items, engine startup seconds; for each pair the capacity ratio with its
95 % interval (a t interval on log capacity over the windows, launch noise pooled over every side, floored at the
capacity search's resolution), the cost ratio and the paired quality difference (`paired_quality`). The goal:
at least 3x the naive baseline's capacity at quality not worse (the paired interval's upper end >= 0), and a gain
over the defaults baseline with its interval; the pairs (defaults / naive: the application, recommended /
defaults: the engine) say which knob family gave how much.

The engine command and environment come from the space, so the same script runs on a GPU host:

    make setup ENGINE_PKGS=vllm
    .venv/bin/autotune search --space search_spaces/gpu-llama8b.yaml
    .venv/bin/python benchmarks/outcome.py --study gpu-llama8b --run-dir runs --pick cheapest-within-quality
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autotune.config.knobs import ServerConfig, TrialConfig
from autotune.config.space import SpaceConfig, load_space
from autotune.measure.regression import Window

GOAL_RATIO = 3.0
BASELINES = ("naive", "defaults")  # baseline 2 (the goal's), baseline 1
# (base, side): the recommended config over each baseline; defaults over naive is the application's share
PAIRS = (("naive", "recommended"), ("defaults", "recommended"), ("naive", "defaults"))
NAIVE_APP = {"architecture": "one_call", "output_format": "json", "prompt_variant": "zero_shot", "constrained": "none",
             "repair": "none", "semantic_cache": False}
REPO = Path(__file__).resolve().parents[1]
DEFAULT_SPACE = REPO / "search_spaces" / "quickstart.yaml"


@dataclass
class Side:
    name: str  # "naive", "defaults" or "recommended"
    config: TrialConfig
    source: str  # where the config came from, in words


@dataclass
class SideRun:
    side: Side
    windows: list[Window] = field(default_factory=list)
    argv: list[str] = field(default_factory=list)  # as launched (redacted), first launch
    env: dict[str, str] = field(default_factory=dict)  # engine env overrides as launched (redacted)
    version: str = ""  # the engine's /version at its first launch


# the two configs (defaults and recommended) are resolved in outcome_sides.py, beside this script
sys.path.insert(0, str(Path(__file__).resolve().parent))
from outcome_report import render  # noqa: E402
from outcome_sides import (  # noqa: E402
    defaults_server,
    from_bundle,
    from_study,
    naive_client,
    parse_client,
    space_value,
)

__all__ = ["Side", "SideRun", "defaults_server", "from_bundle", "from_study", "naive_client", "parse_client",
           "render", "space_value"]


# --- the measurement core ------------------------------------------------------------------------------------------

class _Phases:
    """Prints a window's phase changes on stderr (or nothing)."""

    def __init__(self, quiet: bool):
        self.quiet, self.last = quiet, ""

    def phase(self, name: str) -> None:
        key = name.split(" (")[0]
        if not self.quiet and key != self.last:
            self.last = key
            print(f"  {name}", file=sys.stderr, flush=True)


def measure_outcome(sides: list[Side], inputs, out_dir: Path, windows: int = 2, engine=None,
                    say=None, quiet: bool = True) -> list[SideRun]:
    """Each side `windows` times, every window on a freshly launched engine, in ABAB order, with `run_trial` (via
    nightly's `measure_window`: a TrialError is a failed window with its reason, not an exception). `engine`: a
    VLLMEngine for the space (made here, registry under out_dir/engines, when None)."""
    from autotune.engines.keeper import EngineKeeper
    from autotune.engines.process import EngineRegistry
    from autotune.engines.vllm import VLLMEngine
    from autotune.ops.nightly import measure_window
    from autotune.secrets import redact, redact_argv

    if inputs.space.engine.kind != "vllm":
        raise SystemExit(f"outcome: windows on fresh launches need a self-hosted engine; the space's endpoint is "
                         f"`{inputs.space.engine.kind}`")
    engine = engine or VLLMEngine(inputs.space.engine, EngineRegistry(out_dir / "engines"))
    keeper = EngineKeeper(engine)
    runs = [SideRun(s) for s in sides]
    reporter = _Phases(quiet)
    try:
        for i in range(windows):
            for run in runs:  # ABAB: drift during the run falls on both sides alike
                label = f"{run.side.name}-{i}"
                keeper.close()  # every window on a fresh launch: launch-to-launch variance is in every window
                window = measure_window(run.side.config, inputs, keeper, out_dir / label, label, reporter)
                if keeper.handle is not None and not run.argv:
                    run.argv = redact_argv(keeper.handle.argv)
                    run.env = redact(keeper.handle.env_overrides)
                    run.version = keeper.handle.version
                run.windows.append(window)
                if say:
                    say(window_line(window))
    finally:
        keeper.close()
    return runs


def window_line(w: Window) -> str:
    if not w.ok:
        return f"{w.label}: FAILED {w.failure}"
    m = w.metrics
    return (f"{w.label}: capacity {m.get('capacity_tps', math.nan):.3g} tasks/s, p95 at load "
            f"{m.get('p95_task_ms_at_load', math.nan):.0f} ms, quality {m.get('quality', math.nan):.3f}, startup "
            f"{m.get('startup_s', math.nan):.0f} s")


def _mean(xs: list[float]) -> float:
    xs = [x for x in xs if x == x]
    return sum(xs) / len(xs) if xs else math.nan


def side_summary(run: SideRun, usd_per_hour: float) -> dict[str, Any]:
    """One side over its measured windows; quality from each item's mean score over the windows."""
    from autotune.measure.compare import quality_interval
    from autotune.measure.request_metrics import usd_per_1k

    ok = [w for w in run.windows if w.ok]

    def per(metric: str) -> list[float]:
        return [float(w.metrics.get(metric, math.nan)) for w in ok]

    items: dict[str, list[float]] = {}
    for w in ok:
        for item, score in w.item_scores.items():
            items.setdefault(item, []).append(float(score))
    item_means = {k: sum(v) / len(v) for k, v in items.items()}
    q, q_low, q_high = quality_interval(item_means) if item_means else (math.nan, math.nan, math.nan)
    capacity = _mean(per("capacity_tps"))
    return {
        "name": run.side.name, "source": run.side.source, "windows": len(run.windows), "measured": len(ok),
        "failures": [w.failure for w in run.windows if not w.ok],
        "capacity_tps": capacity, "capacity_windows": per("capacity_tps"),
        "usd_per_1k_tasks": usd_per_1k(usd_per_hour, capacity) if ok else math.nan,
        "p95_task_ms_at_load": _mean(per("p95_task_ms_at_load")), "p95_windows": per("p95_task_ms_at_load"),
        "operating_rate": _mean(per("operating_rate")),
        "quality": q, "quality_low": q_low, "quality_high": q_high, "quality_windows": per("quality"),
        "startup_s": _mean(per("startup_s")), "startup_windows": per("startup_s"),
        "items": item_means, "argv": run.argv, "env": run.env,
        "server": run.side.config.server.model_dump(), "client": run.side.config.client.model_dump(),
    }


def _ratio(a: float, b: float) -> float:
    """a / b; inf for a positive a over 0, NaN when either is unknown."""
    if a != a or b != b:
        return math.nan
    if b == 0:
        return math.inf if a > 0 else math.nan
    return a / b


def compare_sides(base: dict[str, Any], better: dict[str, Any], noise, tolerance: float) -> dict[str, Any]:
    """`better` over `base`: the capacity ratio (geometric means over windows) with its 95 % t interval on the
    pooled launch noise (None without it, or with a capacity-0 window: no log scale), the cost ratio and the paired
    quality difference (better - base)."""
    from autotune.measure.compare import Point, paired_quality, window_difference

    out: dict[str, Any] = {"base": base["name"], "side": better["name"]}
    measured = base["measured"] and better["measured"]
    ratio, low, high = _ratio(better["capacity_tps"], base["capacity_tps"]), math.nan, math.nan
    if measured and noise is not None and noise.log:
        a, b = (Point(s["name"], s["name"], {"capacity_tps": s["capacity_windows"]}, {},
                      {"capacity_tps": tolerance}) for s in (base, better))
        d = window_difference(a, b, "capacity_tps", noise)
        ratio, low, high = d.ratio, d.low, d.high
    out.update(capacity_ratio=ratio, capacity_low=low, capacity_high=high,
               cost_ratio=_ratio(better["usd_per_1k_tasks"], base["usd_per_1k_tasks"])
               if math.isfinite(base["usd_per_1k_tasks"]) else (0.0 if math.isfinite(better["usd_per_1k_tasks"])
                                                                else math.nan),
               p95_ratio=_ratio(better["p95_task_ms_at_load"], base["p95_task_ms_at_load"]))
    diff = paired_quality(base["items"], better["items"])
    out["paired_quality"] = {"delta": diff.delta, "low": diff.low, "high": diff.high, "p": diff.p, "n": diff.n,
                             "test": diff.test, "note": diff.note}
    out["quality_ok"] = (diff.high >= 0 if diff.high == diff.high else diff.delta >= 0) if measured else None
    return out


def summarize(runs: list[SideRun], space: SpaceConfig, tolerance: float = 0.1) -> dict[str, Any]:
    """Every side; every pair (recommended over each baseline, defaults over naive: the application's share);
    the goal against the naive baseline (or against the only baseline run)."""
    from autotune.measure.compare import Point, noise_model

    sides = {r.side.name: side_summary(r, space.hardware.usd_per_hour) for r in runs}
    points = [Point(n, n, {"capacity_tps": s["capacity_windows"]}, {}, {"capacity_tps": tolerance})
              for n, s in sides.items() if s["measured"]]
    noise = noise_model(points, ["capacity_tps"])["capacity_tps"] if points else None
    noise = noise if noise is not None and noise.known else None
    pairs = [(a, b) for a, b in PAIRS if a in sides and b in sides]
    comparisons = {f"{b}/{a}": compare_sides(sides[a], sides[b], noise, tolerance) for a, b in pairs}
    goal_base = next((b for b in BASELINES if b in sides), None)
    goal = comparisons.get(f"recommended/{goal_base}")
    if goal is None or goal["quality_ok"] is None:
        missing = [n for n, s in sides.items() if not s["measured"]]
        verdict, met = f"not judged: {' and '.join(missing) or 'no baseline'} measured no window", None
    else:
        ratio, low, pq = goal["capacity_ratio"], goal["capacity_low"], goal["paired_quality"]
        met = ratio >= GOAL_RATIO and goal["quality_ok"]
        why = (f"capacity ratio {_fmt_ratio(ratio)} {'>=' if ratio >= GOAL_RATIO else '<'} {GOAL_RATIO:g}"
               + (f" (95 % interval from {_fmt_ratio(low)}: {'held' if low >= GOAL_RATIO else 'not held'} at its "
                  "lower end)" if low == low else " (no interval: one window per side, or a capacity-0 window)")
               + f"; quality difference {pq['delta']:+.3f} [{pq['low']:+.3f}, {pq['high']:+.3f}] "
               + ("does not show the recommended config worse" if goal["quality_ok"]
                  else "shows the recommended config worse"))
        verdict = ("met" if met else "not met") + f" ({why})"
    return {"sides": sides, "comparisons": comparisons, "goal_base": goal_base, "goal_met": met,
            "noise": None if noise is None else {"sd_log": noise.sd, "df": noise.df},
            "verdict": f"goal >= {GOAL_RATIO:g}x the {goal_base} baseline's capacity at quality not worse (within the "
            f"paired interval): {verdict}", "sla": space.sla.model_dump(), "hardware": space.hardware.model_dump()}


def _fmt_ratio(x: float) -> str:
    return "n/a" if x != x else ("inf" if math.isinf(x) else f"{x:.2f}x")


def flags(argv: list[str], launcher: list[str]) -> list[str]:
    """The argv after the launcher (the engine's flags)."""
    return argv[len(launcher):] if argv[:len(launcher)] == launcher else argv


def describe(space: SpaceConfig, server: ServerConfig) -> dict[str, Any]:
    """What a side gives the engine beyond the launcher: its flags (the port as `<port>`) and its environment as
    the space states it (a `${NAME}` reference unexpanded, secret-named values masked), with where each variable
    comes from."""
    from autotune.engines.vllm import build_argv, build_env
    from autotune.secrets import redact

    argv = flags(build_argv(server, space.engine, 0), space.engine.launcher())
    argv = [("<port>" if i and argv[i - 1] == "--port" else a) for i, a in enumerate(argv)]
    raw = dict(space.engine.env)
    added = build_env(server, space.engine.model_copy(update={"env": {}}))  # what the tool adds to the space's env
    env = {**raw, **{k: v for k, v in added.items() if not (k == "VLLM_SERVER_DEV_MODE" and k in raw)}}
    origin = {k: "the space's engine.env" for k in raw}
    if "VLLM_CPU_KVCACHE_SPACE" in added:
        origin["VLLM_CPU_KVCACHE_SPACE"] = "kv_cache_space_gb (vLLM-CPU does not start without it)"
    origin.setdefault("VLLM_SERVER_DEV_MODE", "the tuner's own: opens /reset_prefix_cache (a cold cache per level)")
    return {"flags": argv, "env": redact(env), "env_origin": origin, "extra_args": list(space.engine.extra_args)}


# --- the command -----------------------------------------------------------------------------------------------

def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--export", type=Path, help="an exported bundle directory (exports/<study>/v<N>)")
    src.add_argument("--study", help="a finished study: the config `autotune export --pick` would choose")
    ap.add_argument("--run-dir", type=Path, default=Path("runs"), help="the study's run dir; windows go under "
                    "<run-dir>/outcome-<time>/ (default: runs)")
    ap.add_argument("--storage", help="the study's Optuna storage URL (default: <run-dir>/optuna.db)")
    ap.add_argument("--pick", default="cheapest-within-quality", help="export's policy (default: quality-aware)")
    ap.add_argument("--min-quality", type=float, help="export's --min-quality (the *-within-quality policies)")
    ap.add_argument("--space", type=Path, help="the space (default: the study's recorded space with --study, else "
                    "search_spaces/quickstart.yaml)")
    ap.add_argument("--workload", type=Path, help="the workload (default: the study's, else the space's)")
    ap.add_argument("--windows", type=int, default=2, help="windows per side, each on a fresh engine (default 2)")
    ap.add_argument("--baselines", choices=("both", "naive", "defaults"), default="both",
                    help="which baselines to run (default both)")
    ap.add_argument("--baseline-client", help="client knobs of the naive side on top of its one-call, JSON, "
                    "zero-shot application, k=v,k=v")
    ap.add_argument("--baseline-model", help="the baselines' model (default: the space's fixed or first "
                    "enqueued model, else the recommended one)")
    ap.add_argument("--startup-timeout-s", type=float, help="engine startup limit (default: the space's, at least "
                    "900 s: without --enforce-eager the defaults side compiles)")
    ap.add_argument("--out", type=Path, default=REPO / "reports" / "benchmarks" / "outcome.md")
    ap.add_argument("--quiet", action="store_true", help="no phase lines on stderr")
    return ap


def build_sides(space: SpaceConfig, config: TrialConfig, source: str, args) -> list[Side]:
    """The baselines `args.baselines` asks for, then the recommended config; each side's model checked."""
    from autotune.models import problem as model_problem

    server = defaults_server(space, args.baseline_model, config.server)
    naive = Side("naive", TrialConfig(server=server, client=naive_client(space, NAIVE_APP,
                                                                         parse_client(args.baseline_client))),
                 "vLLM's defaults, the application as first written")
    defaults = Side("defaults", TrialConfig(server=server, client=config.client),
                    "vLLM's defaults, the recommended config's application")
    sides = [s for s in (naive, defaults) if args.baselines in ("both", s.name)]
    sides.append(Side("recommended", config, source))
    for side in sides:
        why = model_problem(side.config.server.model, side.config.server.quantization)
        if why:
            raise SystemExit(f"outcome: the {side.name} side's model {side.config.server.model!r}: {why}")
    return sides


def main(argv: list[str] | None = None) -> int:
    ap = _parser()
    args = ap.parse_args(argv)
    if args.windows < 1:
        ap.error("--windows must be >= 1")

    from autotune.search.inputs import trial_inputs
    from autotune.search.study import SearchOptions, load_inputs

    space_file, wl_file = args.space, args.workload
    if args.study:
        given = load_space(space_file, check_paths=False) if space_file else None
        config, source, study = from_study(args.study, args.run_dir, args.storage, args.pick, args.min_quality, given)
        space_file = space_file or Path(study.user_attrs["space_file"])
        wl_file = wl_file or (Path(study.user_attrs["workload_file"]) if "workload_file" in study.user_attrs
                              else None)
    else:
        config, source = from_bundle(args.export)
    space_file = space_file or DEFAULT_SPACE
    space, workload, wl_path = load_inputs(SearchOptions(space_file=space_file, workload_file=wl_file))
    if space.engine.kind != "vllm":
        raise SystemExit(f"outcome: `vllm serve` defaults need a self-hosted engine; the space's endpoint is "
                         f"`{space.engine.kind}`")
    if workload.load_protocol != "capacity":
        raise SystemExit(f"outcome: the workload `{wl_path}` is not `load_protocol: capacity`: capacity at SLA is "
                         "what this compares")
    space.engine.startup_timeout_s = args.startup_timeout_s or max(space.engine.startup_timeout_s, 900.0)
    sides = build_sides(space, config, source, args)
    described = {side.name: describe(space, side.config.server) for side in sides}
    for side in sides:
        info = described[side.name]
        print(f"{side.name} ({side.source}):\n  flags: {' '.join(info['flags'])}\n  env: "
              + ", ".join(f"{k}={v}" for k, v in sorted(info["env"].items()))
              + f"\n  application: {side.config.client.model_dump()}", flush=True)

    inputs = trial_inputs(space, workload, wl_path)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    out_dir = (args.run_dir / f"outcome-{stamp}").resolve()
    from autotune.engines.process import EngineRegistry
    from autotune.engines.vllm import VLLMEngine

    engine = VLLMEngine(space.engine, EngineRegistry(args.run_dir.resolve() / "engines"))  # where a search reaps
    runs = measure_outcome(sides, inputs, out_dir, args.windows, engine=engine,
                           say=lambda line: print(line, flush=True), quiet=args.quiet)
    summary = summarize(runs, space, workload.capacity.tolerance)
    meta = {"created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "space": str(space_file),
            "workload": str(wl_path), "engine_version": next((r.version for r in runs if r.version), "unknown"),
            "eval_items": len(inputs.eval_ids),
            "out_dir": str(out_dir)}
    text = render(summary, described, meta)
    print()
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(f"written: {args.out}")
    return 0


if __name__ == "__main__":
    from autotune.errors import ConfigError

    try:
        sys.exit(main())
    except ConfigError as exc:  # a wrong study, policy, space or workload: one line, not a traceback
        sys.exit(f"outcome: {exc}")
