"""What tuning buys over `vllm serve` defaults: the recommended config against vLLM's defaults, side by side, in one
run, on the same model, workload and SLA, measured by the tuner's own trial machinery (`run_trial`: capacity at
SLA by open-loop levels, latency at the operating load, quality on the workload's fixed evaluation set).

    .venv/bin/python benchmarks/outcome.py --export exports/quickstart/v1
    .venv/bin/python benchmarks/outcome.py --study quickstart --run-dir runs --pick cheapest-within-quality

The two sides:
1. **vLLM defaults**: the engine with only the model (and the served name, host and port, which the tool always
   gives): no dtype, no eager mode, no block size, no max-num-seqs, no KV flags, no seed. On CPU vLLM does not start
   without `VLLM_CPU_KVCACHE_SPACE` (it would reserve 0.92 of the NUMA node's memory), so the defaults side gets
   the space's `kv_cache_space_gb` there, plus the engine env the space gives (and the tuner's own
   `VLLM_SERVER_DEV_MODE=1`, which only opens `/reset_prefix_cache` between levels): defaults = the minimum that
   starts. Its application is the space's first `search.enqueue` config's client part (the application a user
   starts from), or `--baseline-client k=v,...` on top of it.
2. **the recommended config**: the config an exported bundle holds (`--export DIR`), or the one `autotune export
   --pick POLICY` would choose from a finished study (`--study NAME --run-dir DIR --pick ...`, export's own
   `candidates` + `pick`).

Each side is measured `--windows` times (default 2), every window on a freshly launched engine, in ABAB order so
drift hits both. Printed and written to `--out` (reports/benchmarks/outcome.md): per side the capacity at SLA
(mean and per window), $ per 1k tasks at that capacity, p95 task latency at the operating load, quality with a
bootstrap interval over the evaluation items, engine startup seconds; the capacity and cost ratios, the paired
quality difference (recommended - defaults, `paired_quality`) and the verdict on the goal: at least 3x the
capacity at equal or better quality (the paired interval's upper end >= 0).

The engine command and environment come from the space, so the same script runs on a GPU host:

    make setup ENGINE_PKGS=vllm
    .venv/bin/autotune search --space search_spaces/gpu-llama8b.yaml
    .venv/bin/python benchmarks/outcome.py --study gpu-llama8b --run-dir runs --pick cheapest-within-quality \\
        --baseline-client architecture=one_call,output_format=json,repair=none,prompt_variant=zero_shot

(that space has no `search.enqueue`, so without `--baseline-client` the defaults side runs the application's own
defaults: ClientConfig's values and the space's fixed client knobs).
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
REPO = Path(__file__).resolve().parents[1]
DEFAULT_SPACE = REPO / "search_spaces" / "quickstart.yaml"


@dataclass
class Side:
    name: str  # "defaults" or "recommended"
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
from outcome_sides import (  # noqa: E402
    baseline_client,
    defaults_server,
    from_bundle,
    from_study,
    parse_client,
    space_value,
)

__all__ = ["Side", "SideRun", "baseline_client", "defaults_server", "from_bundle", "from_study", "parse_client",
           "space_value"]


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


def summarize(runs: list[SideRun], space: SpaceConfig) -> dict[str, Any]:
    """Both sides, the ratios (recommended / defaults), the paired quality difference and the verdict."""
    from autotune.measure.compare import paired_quality

    sides = {r.side.name: side_summary(r, space.hardware.usd_per_hour) for r in runs}
    d, r = sides["defaults"], sides["recommended"]
    capacity_ratio = _ratio(r["capacity_tps"], d["capacity_tps"])
    cost_ratio = _ratio(r["usd_per_1k_tasks"], d["usd_per_1k_tasks"]) if math.isfinite(d["usd_per_1k_tasks"]) \
        else (0.0 if math.isfinite(r["usd_per_1k_tasks"]) else math.nan)
    diff = paired_quality(d["items"], r["items"])
    paired = {"delta": diff.delta, "low": diff.low, "high": diff.high, "p": diff.p, "n": diff.n, "test": diff.test,
              "note": diff.note}
    if not d["measured"] or not r["measured"]:
        missing = [s["name"] for s in (d, r) if not s["measured"]]
        verdict, met = f"not judged: {' and '.join(missing)} measured no window", None
    else:
        quality_ok = diff.high >= 0 if diff.high == diff.high else diff.delta >= 0
        met = capacity_ratio >= GOAL_RATIO and quality_ok
        why = (f"capacity ratio {_fmt_ratio(capacity_ratio)} {'>=' if capacity_ratio >= GOAL_RATIO else '<'} "
               f"{GOAL_RATIO:g}; quality difference {diff.delta:+.3f} [{diff.low:+.3f}, {diff.high:+.3f}] "
               + ("does not show the recommended config worse" if quality_ok else "shows the recommended config worse"))
        verdict = ("met" if met else "not met") + f" ({why})"
    return {"sides": sides, "capacity_ratio": capacity_ratio, "cost_ratio": cost_ratio, "paired_quality": paired,
            "goal_met": met, "verdict": f"goal >= {GOAL_RATIO:g}x capacity at equal or better quality (within the "
            f"paired interval): {verdict}", "sla": space.sla.model_dump(), "hardware": space.hardware.model_dump()}


# --- the report ------------------------------------------------------------------------------------------------

def _fmt_ratio(x: float) -> str:
    return "n/a" if x != x else ("inf" if math.isinf(x) else f"{x:.2f}x")


def _num(x: float, digits: int = 3) -> str:
    return "n/a" if x != x else ("inf" if math.isinf(x) else f"{x:.{digits}g}")


def _windows(xs: list[float], digits: int = 3) -> str:
    return "(" + ", ".join(_num(x, digits) for x in xs) + ")" if len(xs) > 1 else ""


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


def _table(summary: dict[str, Any], rate: float) -> list[str]:
    """The side-by-side table: capacity, cost, p95 at the operating load, quality, startup."""
    d, r, pq = summary["sides"]["defaults"], summary["sides"]["recommended"], summary["paired_quality"]

    def cell(s: dict[str, Any], key: str, windows: str, digits: int = 3) -> str:
        if not s["measured"]:
            return "not measured"
        return f"{_num(s[key], digits)} {_windows(s[windows], digits)}".strip()

    def quality(s: dict[str, Any]) -> str:
        return "not measured" if not s["measured"] else (
            f"{s['quality']:.3f} [{_num(s['quality_low'])}, {_num(s['quality_high'])}] {_windows(s['quality_windows'])}"
        ).strip()

    p95_ratio = _ratio(r["p95_task_ms_at_load"], d["p95_task_ms_at_load"])
    rows = [
        ("capacity at SLA (tasks/s; per window)", cell(d, "capacity_tps", "capacity_windows"),
         cell(r, "capacity_tps", "capacity_windows"), _fmt_ratio(summary["capacity_ratio"])),
        ("$ per 1k tasks at capacity", _num(d["usd_per_1k_tasks"]), _num(r["usd_per_1k_tasks"]),
         _fmt_ratio(summary["cost_ratio"])),
        (f"p95 task latency at the operating load ({_num(rate)} tasks/s), ms", cell(d, "p95_task_ms_at_load",
         "p95_windows", 4), cell(r, "p95_task_ms_at_load", "p95_windows", 4), _fmt_ratio(p95_ratio)),
        ("quality [95% CI over items] (per window)", quality(d), quality(r),
         "n/a" if pq["delta"] != pq["delta"] else f"{pq['delta']:+.3f} (paired)"),
        ("engine startup, s (per window)", cell(d, "startup_s", "startup_windows", 3),
         cell(r, "startup_s", "startup_windows", 3), _fmt_ratio(_ratio(r["startup_s"], d["startup_s"]))),
    ]
    table = ["| | vLLM defaults | recommended | recommended / defaults |", "|---|---|---|---|"]
    table += [f"| {a} | {b} | {c} | {e} |" for a, b, c, e in rows]
    return table


def render(summary: dict[str, Any], described: dict[str, dict[str, Any]], meta: dict[str, Any]) -> str:
    d, r = summary["sides"]["defaults"], summary["sides"]["recommended"]
    sla, pq = summary["sla"], summary["paired_quality"]
    rate = d["operating_rate"] if d["operating_rate"] == d["operating_rate"] else r["operating_rate"]

    table = _table(summary, rate)

    def shown(k: str, v: Any, client: dict[str, Any]) -> bool:  # the knobs that act on this application
        return v is not None and not (k == "cache_threshold" and not client["semantic_cache"]) \
            and not (k == "judge_rounds" and client["architecture"] != "judge")

    def side_lines(s: dict[str, Any]) -> list[str]:
        info = described[s["name"]]
        lines = [f"- engine flags: `{' '.join(info['flags'])}`",
                 "- engine env: " + (", ".join(f"`{k}={v}`" for k, v in sorted(info["env"].items())) or "none"),
                 "- application: " + ", ".join(f"{k}={v}" for k, v in s["client"].items() if shown(k, v, s["client"]))]
        lines += [f"- failed window: {f}" for f in s["failures"]]
        return lines

    info = described["defaults"]
    env_note = "; ".join(f"`{k}`: {why}" for k, why in sorted(info["env_origin"].items()))
    extra = (f" The space's `engine.extra_args` are appended to both sides: `{' '.join(info['extra_args'])}`."
             if info["extra_args"] else "")
    windows = max(d["windows"], r["windows"])
    text = [
        "# What tuning buys over `vllm serve` defaults",
        "",
        f"{meta['created']}, space `{meta['space']}` (workload `{meta['workload']}`), hardware "
        f"{summary['hardware']['name']} (${summary['hardware']['usd_per_hour']:g}/h), engine {meta['engine_version']}."
        f" SLA: {sla['attainment']:.0%} of tasks within {_num(sla['task_ms'], 6)} ms"
        + (f", TTFT <= {_num(sla['ttft_ms'], 6)} ms" if sla.get("ttft_ms") else "")
        + (f", TPOT <= {_num(sla['tpot_ms'], 6)} ms" if sla.get("tpot_ms") else "")
        + f". {windows} window(s) per side, each on a freshly launched engine, in ABAB order; the capacity protocol "
        f"and {meta['eval_items']} fixed evaluation items per window. Runs (each window's engine-argv.json, levels, "
        f"item scores): `{meta['out_dir']}`.",
        "",
        *table,
        "",
        f"- **capacity ratio** (recommended / defaults): {_fmt_ratio(summary['capacity_ratio'])}",
        f"- **cost ratio** ($ per 1k tasks at capacity, recommended / defaults): {_fmt_ratio(summary['cost_ratio'])}",
        f"- **paired quality difference** (recommended - defaults, {pq['n']} items): "
        + ("n/a" if pq["delta"] != pq["delta"] else f"{pq['delta']:+.3f} [95% CI {pq['low']:+.3f}, {pq['high']:+.3f}],"
           f" p = {pq['p']:.3g} ({pq['test']})" + (f"; {pq['note']}" if pq["note"] else "")),
        f"- **{summary['verdict']}**",
        "",
        "## vLLM defaults",
        "",
        "defaults = the minimum that starts: `--model` (and `--served-model-name`, `--host`, `--port`, which the tool "
        f"always gives), no other flag.{extra} Environment: {env_note}.",
        "",
        *side_lines(d),
        "",
        "## Recommended",
        "",
        f"From {r['source']}.",
        "",
        *side_lines(r),
        "",
    ]
    return "\n".join(text)


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
    ap.add_argument("--baseline-client", help="client knobs of the defaults side on top of the space's first "
                    "enqueue config, k=v,k=v")
    ap.add_argument("--baseline-model", help="the defaults side's model (default: the space's fixed or first "
                    "enqueued model, else the recommended one)")
    ap.add_argument("--startup-timeout-s", type=float, help="engine startup limit (default: the space's, at least "
                    "900 s: without --enforce-eager the defaults side compiles)")
    ap.add_argument("--out", type=Path, default=REPO / "reports" / "benchmarks" / "outcome.md")
    ap.add_argument("--quiet", action="store_true", help="no phase lines on stderr")
    return ap


def main(argv: list[str] | None = None) -> int:
    ap = _parser()
    args = ap.parse_args(argv)
    if args.windows < 1:
        ap.error("--windows must be >= 1")

    from autotune.models import problem as model_problem
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
    if workload.load_protocol != "capacity":
        raise SystemExit(f"outcome: the workload `{wl_path}` is not `load_protocol: capacity`: capacity at SLA is "
                         "what this compares")
    space.engine.startup_timeout_s = args.startup_timeout_s or max(space.engine.startup_timeout_s, 900.0)
    recommended = Side("recommended", config, source)
    client = baseline_client(space, parse_client(args.baseline_client))
    defaults = Side("defaults", TrialConfig(server=defaults_server(space, args.baseline_model, config.server),
                                            client=client), "vLLM's defaults")
    for side in (defaults, recommended):
        why = model_problem(side.config.server.model, side.config.server.quantization)
        if why:
            raise SystemExit(f"outcome: the {side.name} side's model {side.config.server.model!r}: {why}")
    described = {side.name: describe(space, side.config.server) for side in (defaults, recommended)}
    for side in (defaults, recommended):
        info = described[side.name]
        print(("defaults = the minimum that starts" if side.name == "defaults" else f"recommended ({source})")
              + f":\n  flags: {' '.join(info['flags'])}\n  env: "
              + ", ".join(f"{k}={v}" for k, v in sorted(info["env"].items()))
              + f"\n  application: {side.config.client.model_dump()}", flush=True)

    inputs = trial_inputs(space, workload, wl_path)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    out_dir = (args.run_dir / f"outcome-{stamp}").resolve()
    from autotune.engines.process import EngineRegistry
    from autotune.engines.vllm import VLLMEngine

    engine = VLLMEngine(space.engine, EngineRegistry(args.run_dir.resolve() / "engines"))  # where a search reaps
    runs = measure_outcome([defaults, recommended], inputs, out_dir, args.windows, engine=engine,
                           say=lambda line: print(line, flush=True), quiet=args.quiet)
    summary = summarize(runs, space)
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
