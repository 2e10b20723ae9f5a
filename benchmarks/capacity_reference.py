"""Our capacity at SLA against GuideLLM's, on the same engine, prompts and SLO.

    python -m venv .venv-guidellm && .venv-guidellm/bin/pip install guidellm==0.8.1
    .venv/bin/python benchmarks/capacity_reference.py --reps 3

The application is the quickstart's warm start with `architecture: one_call`, so a task is one request and both
tools count the same thing. Per repeat, on one freshly launched engine:
(a) our capacity search (`run_trial`: open-loop Poisson levels, judged on the task SLA with a Wilson interval);
(b) GuideLLM at fixed Poisson rates around our answer (1.0x and 1.1x by default), each judged by our own SLA rule
    (autotune.sla) on the requests GuideLLM recorded in its window;
(c) GuideLLM's goodput profile (concurrent streams, doubling then bisection), with the same SLO.
GuideLLM gets the prompts our tasks sent (system and user message joined) and, per item, the output length our
tasks produced (it sends `ignore_eos`, so a count is a length). Printed and written to `--out`: capacity, its
spread over repeats, load-seconds and wall-seconds side by side, and the goals of issue 21.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from outcome import DEFAULT_SPACE  # noqa: E402
from outcome_sides import baseline_client  # noqa: E402


@dataclass
class Rep:
    """One repeat: our search and GuideLLM's runs on one fresh engine."""

    ours: dict[str, Any] = field(default_factory=dict)  # capacity, bracket, levels, load_s, wall_s
    poisson: list[dict[str, Any]] = field(default_factory=list)  # per rate: attainment, verdict, load_s, wall_s
    goodput: dict[str, Any] = field(default_factory=dict)  # streams, req/s at the answer, load_s, wall_s
    failure: str = ""


# --- GuideLLM ------------------------------------------------------------------------------------------------------

def guidellm_argv(exe: str, url: str, model: str, data: Path, profile: dict[str, Any], seconds: float,
                  slo: dict[str, float], out: Path, tokenizer: str) -> list[str]:
    """A `guidellm run` command (0.8.1: every option is a JSON registry entry; benchmarks/guidellm-0.8.1.md)."""
    backend = {"kind": "openai_http", "target": url, "model": model, "request_format": "/v1/chat/completions",
               "stream": True}
    return [exe, "run", "--backend", json.dumps(backend), "--profile", json.dumps(profile),
            "--constraint", json.dumps({"kind": "max_duration", "seconds": seconds}),
            "--data", json.dumps({"kind": "json_file", "path": str(data)}),
            "--tokenizer", json.dumps({"kind": "huggingface_auto", "model": tokenizer,
                                       "load_kwargs": {"local_files_only": True}}),
            "--metrics", json.dumps({"kind": "generative", "slo": slo}),
            "--seed", json.dumps({"kind": "static", "value": 42}),
            "--output", json.dumps({"kind": "json", "path": str(out)}), "--disable-console-interactive"]


def run_guidellm(argv: list[str], out: Path, log: Path) -> tuple[dict[str, Any], float, float]:
    """Run it offline (HF_HOME under the run dir), as its own process group (stopped with the benchmark), with
    one worker process: its default of 10 took the 2 cores the engine needs (0.11 attainment at a rate our
    levels held). (report, wall seconds, its CPU seconds)."""
    from autotune.engines import start_group, terminate_group

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "HF_HOME": str(out.parent / "hf-home"), "GUIDELLM__MAX_WORKER_PROCESSES": "1"}
    started, cpu0 = time.monotonic(), _children_cpu()
    proc = start_group(argv, env, log, cwd=out.parent)
    try:
        rc = proc.wait(timeout=1800)
    finally:
        terminate_group(proc.pid, 5.0)
    wall = time.monotonic() - started
    if rc != 0 or not out.is_file():
        raise RuntimeError(f"guidellm exited {rc}: see {log}")
    return json.loads(out.read_text()), wall, _children_cpu() - cpu0


def _children_cpu() -> float:
    import resource

    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def window_requests(bench: dict[str, Any], task_ms: float | None = None) -> tuple[list[dict[str, Any]], int]:
    """The requests a GuideLLM benchmark started inside its measured window (its lists include warmup and
    cooldown requests), as our task records (ok, latency_s, one fm span with its TTFT and tokens), and how many
    were censored. GuideLLM cancels what is in flight when its duration ends (no drain): an incomplete request
    already older than `task_ms` then is a known miss (our rule, autotune.sla.known_miss), a younger one has no
    outcome and is left out (counted)."""
    start, end = bench.get("start_time", -math.inf), bench.get("end_time", math.inf)
    out, censored = [], 0
    for status, rows in (bench.get("requests") or {}).items():
        for r in rows or []:
            begun = r.get("request_start_time")
            if begun is None or not (start <= begun <= end):
                continue
            if status == "incomplete" and not (task_ms and (end - begun) * 1000.0 > task_ms):
                censored += 1
                continue
            ttft = r.get("time_to_first_token_ms")
            # from the scheduled arrival, as ours is (equal to request_latency while its scheduler keeps up)
            latency = r.get("request_scheduled_latency") or r.get("request_latency")
            ok = status == "successful" and latency is not None
            out.append({"ok": ok, "latency_s": float(latency or 0.0),
                        "spans": [{"kind": "fm", "ms": float(latency or 0.0) * 1000.0,
                                   "ttft_s": ttft / 1000.0 if ttft is not None else None,
                                   "tokens_out": int(r.get("output_tokens") or 0)}]})
    return out, censored


def judge_benchmark(bench: dict[str, Any], limits: dict[str, float | None], target: float,
                    confidence: float) -> dict[str, Any]:
    """A fixed-rate GuideLLM run judged by our own rule and Wilson interval."""
    from autotune.sla import judge, task_meets

    tasks, censored = window_requests(bench, limits.get("task_ms"))
    v = judge(sum(task_meets(t, limits) for t in tasks), len(tasks), target, confidence)
    window = float(bench.get("end_time", 0.0) - bench.get("start_time", 0.0))
    return {"requests": len(tasks), "censored": censored,
            "achieved_rate": (len(tasks) + censored) / window if window > 0 else math.nan,
            "attainment": v.attainment, "ci": (v.ci_low, v.ci_high), "passed": v.passed, "resolved": v.resolved,
            "load_s": bench_seconds([bench])}


def bench_seconds(benches: list[dict[str, Any]]) -> float:
    return sum(float(b.get("end_time", 0.0) - b.get("start_time", 0.0)) for b in benches)


def goodput_answer(report: dict[str, Any]) -> dict[str, Any]:
    """The goodput profile's conclusion: best passing streams, the rate that probe carried, its probes."""
    concl = next((c for c in report.get("conclusions") or [] if "best_passing_streams" in c), {})
    benches = report.get("benchmarks") or []
    best = concl.get("best_passing_streams")
    rate = math.nan
    for b in benches:  # the probe that ran at the answer's concurrency
        streams = ((b.get("config") or {}).get("strategy") or {}).get("streams")
        if best is not None and streams == best:
            rps = (((b.get("metrics") or {}).get("requests_per_second") or {}).get("successful") or {})
            rate = float(rps.get("mean", math.nan))
    return {"streams": best, "lowest_failing": concl.get("lowest_failing_streams"),
            "stop": concl.get("stop_reason"), "probes": len(concl.get("probes") or benches), "rate": rate,
            "load_s": bench_seconds(benches)}


# --- the shared inputs -----------------------------------------------------------------------------------------------

def reference_config(space):
    """The quickstart's warm start as a one_call application: the space's fixed server values and its first
    enqueued config's server knobs."""
    from autotune.config.knobs import KNOBS, ServerConfig, TrialConfig

    params = dict(space.search.enqueue[0]) if space.search.enqueue else {}
    server = {n: s.value for n, s in space.knobs.items() if KNOBS[n].part == "server" and s.value is not None}
    server.update({k: v for k, v in params.items() if k in KNOBS and KNOBS[k].part == "server"})
    return TrialConfig(server=ServerConfig(**server), client=baseline_client(space, {"architecture": "one_call"}))


def prompts_file(trial_dir: Path, out: Path) -> int:
    """GuideLLM's data: every task our levels could send, as the one_call prompt (messages joined) with the output
    length our tasks produced for that item (median over our requests; max_tokens when never answered)."""
    from autotune.fmware import AppConfig
    from autotune.fmware.architectures import build

    cfg = json.loads((trial_dir / "levels" / "level-00" / "load-config.json").read_text())
    app = AppConfig.from_dict(cfg["app"])
    lengths: dict[str, list[int]] = {}
    for level in sorted((trial_dir / "levels").glob("level-*")):
        for line in (level / "tasks.jsonl").read_text().splitlines():
            t = json.loads(line)
            toks = [s.get("tokens_out") or 0 for s in t.get("spans") or [] if s.get("kind") == "fm"]
            if t.get("ok") and toks:
                lengths.setdefault(str(t.get("id")), []).append(sum(toks))
    rows = []
    for item in cfg["tasks"]:
        call = next(n for n in build(app, item) if n.kind == "fm")
        request = call.build({})
        prompt = "\n\n".join(m["content"] for m in request["messages"])
        n = lengths.get(str(item["id"]))
        rows.append({"prompt": prompt, "output_tokens_count": int(statistics.median(n)) if n else app.max_tokens})
    out.write_text("".join(json.dumps(r) + "\n" for r in rows * 4))  # more rows than any run asks for
    return len(rows)


def our_side(trial_dir: Path, metrics: dict[str, float], wall_s: float) -> dict[str, Any]:
    """Our search's answer and what it cost: load-seconds are each level's time with load applied (its warmup,
    window and drain), wall-seconds the trial's whole run (launch excluded: the engine is GuideLLM's too)."""
    rows = json.loads((trial_dir / "capacity_levels.json").read_text())
    load = 0.0
    for i in range(len(rows)):
        s = json.loads((trial_dir / "levels" / f"level-{i:02d}" / "summary.json").read_text())
        load += (s["measure_end"] - s["t0"]) + float(s.get("drain_s") or 0.0)
    return {"capacity": metrics.get("capacity_tps", math.nan), "high": metrics.get("capacity_high", math.nan),
            "levels": [(r["rate"], r["passed"], r.get("segment", 0)) for r in rows], "load_s": load,
            "wall_s": wall_s - metrics.get("startup_s", 0.0), "p95_at_load": metrics.get("p95_task_ms_at_load")}


def one_rep(i: int, config, inputs, keeper, out_dir: Path, args, limits, sla) -> Rep:
    from autotune.engines import reset_prefix_cache
    from autotune.ops.nightly import measure_window

    rep, label = Rep(), f"rep-{i}"
    keeper.close()  # a fresh engine per repeat
    started = time.monotonic()
    window = measure_window(config, inputs, keeper, out_dir / label, label)
    if not window.ok or keeper.handle is None:
        rep.failure = window.failure or "no engine"
        return rep
    trial_dir = out_dir / label
    rep.ours = our_side(trial_dir, window.metrics, time.monotonic() - started)
    print(f"{label}: ours {rep.ours['capacity']:.3g} tasks/s [{rep.ours['capacity']:.3g}, {rep.ours['high']:.3g})",
          flush=True)
    data = trial_dir / "guidellm-prompts.jsonl"
    prompts_file(trial_dir, data)
    h = keeper.handle
    slo = {k: v for k, v in (("ttft_ms", limits["ttft_ms"]), ("e2el_ms", limits["task_ms"])) if v}

    def guidellm(name: str, profile: dict[str, Any], seconds: float) -> tuple[dict[str, Any], float, float]:
        """One GuideLLM run on this engine, its prefix cache reset first (as before each of our levels: no run
        inherits the prompts of the last one)."""
        out = trial_dir / f"guidellm-{name}.json"
        reset_prefix_cache(h.url)
        return run_guidellm(guidellm_argv(args.guidellm, h.url, h.served_model, data, profile, seconds, slo, out,
                                          args.tokenizer), out, out.with_suffix(".log"))

    # an unmeasured GuideLLM run first: its first invocation builds its dataset cache (in HF_HOME) while it loads
    # the engine, and in the first measured run that was always the one that missed
    guidellm("warmup", {"kind": "synchronous"}, 3.0)
    warmup = {"mode": "duration", "value": args.warmup_s}
    for factor in args.factors:
        rate = rep.ours["capacity"] * factor
        report, wall, cpu = guidellm(f"poisson-{factor:g}", {"kind": "poisson", "rate": rate, "warmup": warmup},
                                     (args.poisson_s or args.level_s) + args.warmup_s)
        verdict = judge_benchmark(report["benchmarks"][0], limits, sla.attainment, args.confidence)
        rep.poisson.append({"factor": factor, "rate": rate, "wall_s": wall, "cpu_share": cpu / wall, **verdict})
        print(f"  guidellm poisson {rate:.3g}/s ({factor:g}x): attainment {verdict['attainment']:.3f} "
              f"[{verdict['ci'][0]:.3f}, {verdict['ci'][1]:.3f}] -> {'held' if verdict['passed'] else 'missed'}",
              flush=True)
    if args.ours_long:
        rep.ours["long"] = [ours_long(trial_dir, h.url, rate_factor * rep.ours["capacity"], args, limits, sla)
                            for rate_factor in args.factors]
    if args.no_goodput:
        return rep
    profile = {"kind": "goodput", "target_attainment": sla.attainment, "initial_streams": 1, "max_streams": 64,
               "tolerance": args.tolerance, "max_probes": 10, "confidence": 0.95, "warmup": warmup}
    report, wall, cpu = guidellm("goodput", profile, args.level_s + args.warmup_s)
    rep.goodput = {**goodput_answer(report), "wall_s": wall, "cpu_share": cpu / wall}
    print(f"  guidellm goodput: {rep.goodput['streams']} streams, {rep.goodput['rate']:.3g} req/s", flush=True)
    return rep


def ours_long(trial_dir: Path, url: str, rate: float, args, limits, sla) -> dict[str, Any]:
    """Our own load generator at a fixed Poisson rate for as long as GuideLLM's fixed-rate runs (the operating
    level's load config, no early stop, prefix cache reset first): what a short level's verdict says against a
    long window on the same engine."""
    from autotune.engines import reset_prefix_cache
    from autotune.loadgen import run_load
    from autotune.loadgen.load_config import read_load_config
    from autotune.sla import judge, task_meets

    out = trial_dir / f"ours-long-{rate:.3g}"
    cfg = read_load_config(trial_dir / "levels" / "level-00" / "load-config.json").with_(
        arrival={"mode": "poisson", "rate": rate, "users": None}, duration_s=args.poisson_s or args.level_s,
        warmup_s=args.warmup_s, level=None, out_dir=str(out))
    reset_prefix_cache(url)
    load = run_load(url, cfg, out)
    tasks = [t for t in load.tasks if t.get("phase") == "measure"]
    v = judge(sum(task_meets(t, limits) for t in tasks), len(tasks), sla.attainment, args.confidence)
    print(f"  ours, one {cfg.duration_s:g}-s window at {rate:.3g}/s: attainment {v.attainment:.3f} "
          f"[{v.ci_low:.3f}, {v.ci_high:.3f}] of {v.judged}", flush=True)
    return {"rate": rate, "attainment": v.attainment, "ci": (v.ci_low, v.ci_high), "passed": v.passed,
            "judged": v.judged}


def _spread(xs: list[float]) -> str:
    xs = [x for x in xs if x == x and x > 0]
    if len(xs) < 2:
        return "n/a"
    mean = statistics.mean(xs)
    return f"max/min x{max(xs) / min(xs):.2f}, CV {statistics.stdev(xs) / mean * 100:.0f} %"


def render(reps: list[Rep], meta: dict[str, Any]) -> str:
    ok = [r for r in reps if not r.failure]
    lines = [f"# Capacity against GuideLLM 0.8.1 ({meta['created'][:10]})", "",
             f"Space `{meta['space']}` (warm start as one_call), engine {meta['engine']}, SLA {meta['sla']}; "
             f"{len(reps)} repeats on fresh engines ({len(reps) - len(ok)} failed: "
             f"{'; '.join(r.failure for r in reps if r.failure) or 'none'}). Windows under `{meta['out_dir']}`.", "",
             "| rep | ours: capacity [bracket) | levels | load s | wall s | GuideLLM Poisson (ours x factor) "
             "| goodput: streams (req/s) | load s | wall s |", "|---|---|---|---|---|---|---|---|---|"]
    for i, r in enumerate(ok):
        lv = " ".join(f"{x:.3g}{'+' if p else '-'}" + ("(cont.)" if e else "") for x, p, e in r.ours["levels"])
        po = "; ".join(f"{p['factor']:g}x {p['rate']:.3g}/s: {p['attainment']:.2f} of {p['requests']} "
                       f"{'held' if p['passed'] else 'missed'}{'' if p['resolved'] else ' (unresolved)'}, "
                       f"{p['censored']} cut, CPU {p['cpu_share']:.0%}" for p in r.poisson)
        g = r.goodput or {"streams": None, "rate": math.nan, "cpu_share": math.nan, "load_s": math.nan,
                          "wall_s": math.nan}
        lines.append(f"| {i} | {r.ours['capacity']:.3g} [{r.ours['capacity']:.3g}, {r.ours['high']:.3g}) | {lv} | "
                     f"{r.ours['load_s']:.0f} | {r.ours['wall_s']:.0f} | {po} | {g['streams']} ({g['rate']:.3g}), CPU "
                     f"{g['cpu_share']:.0%} | "
                     f"{g['load_s']:.0f} | {g['wall_s']:.0f} |")
    longs = [f"{x['rate']:.3g}/s: {x['attainment']:.3f} of {x['judged']}" for r in ok for x in r.ours.get("long", [])]
    if longs:
        lines += ["", "Our load generator, one long window per rate on the same engine: " + "; ".join(longs) + "."]
    ours = [r.ours["capacity"] for r in ok]
    held = [p["passed"] for r in ok for p in r.poisson if p["factor"] <= 1.0]
    missed = [not p["passed"] for r in ok for p in r.poisson if p["factor"] > 1.0]
    load_ratio = [r.ours["load_s"] / r.goodput["load_s"] for r in ok if r.goodput.get("load_s")]
    poisson_s = {round(p["load_s"]) for r in ok for p in r.poisson}
    lines += ["", "## Goals (issue 21)", "",
              f"- GuideLLM's Poisson runs ({', '.join(map(str, sorted(poisson_s)))} s windows) hold the SLA at our "
              f"capacity: {sum(held)}/{len(held)}; miss it above our capacity: {sum(missed)}/{len(missed)}.",
              f"- Our run-to-run spread: {_spread(ours)} over {len(ours)} fresh engines (goal <= 10 %).",
              "- Our load-seconds / the goodput profile's: "
              + (", ".join(f"{x:.2f}" for x in load_ratio) or "n/a") + " (goal < 1).",
              f"- GuideLLM's goodput answer: {_spread([r.goodput.get('rate', math.nan) for r in ok])} in req/s.", ""]
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--space", type=Path, default=DEFAULT_SPACE)
    ap.add_argument("--reps", type=int, default=3, help="repeats, each on a fresh engine (default 3)")
    ap.add_argument("--guidellm", default=str(REPO / ".venv-guidellm" / "bin" / "guidellm"))
    ap.add_argument("--tokenizer", default=str(Path("~/.cache/autotune/models/smollm2-135m").expanduser()),
                    help="a local tokenizer directory for GuideLLM (it loads one even for json data)")
    ap.add_argument("--factors", type=float, nargs="+", default=[1.0, 1.1], help="Poisson rates as x our capacity")
    ap.add_argument("--level-s", type=float, default=None, help="seconds per GuideLLM run or probe (default: the "
                    "workload's level_s)")
    ap.add_argument("--warmup-s", type=float, default=None, help="GuideLLM warmup (default: the workload's)")
    ap.add_argument("--poisson-s", type=float, default=None, help="seconds of each fixed-rate GuideLLM run "
                    "(default: --level-s): a longer window averages over more bursts")
    ap.add_argument("--no-goodput", action="store_true", help="skip GuideLLM's goodput profile")
    ap.add_argument("--ours-long", action="store_true", help="also run our load generator at each fixed rate "
                    "for --poisson-s (a long window against the short levels' verdicts)")
    ap.add_argument("--run-dir", type=Path, default=Path("runs"))
    ap.add_argument("--out", type=Path, default=REPO / "reports" / "benchmarks" / "capacity-reference.md")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from autotune.engines.keeper import EngineKeeper
    from autotune.engines.process import EngineRegistry
    from autotune.engines.vllm import VLLMEngine
    from autotune.search.inputs import trial_inputs
    from autotune.search.study import SearchOptions, load_inputs
    from autotune.sla import limits_of

    if not Path(args.guidellm).is_file():
        raise SystemExit(f"capacity_reference: {args.guidellm} not found: python -m venv .venv-guidellm && "
                         ".venv-guidellm/bin/pip install guidellm==0.8.1")
    space, workload, wl_path = load_inputs(SearchOptions(space_file=args.space))
    cap = workload.capacity
    args.level_s = args.level_s or cap.level_s
    args.warmup_s = cap.warmup_s if args.warmup_s is None else args.warmup_s
    args.confidence, args.tolerance = cap.confidence, cap.tolerance
    config, inputs, limits = reference_config(space), trial_inputs(space, workload, wl_path), limits_of(space.sla)
    out_dir = (args.run_dir / f"capacity-reference-{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%SZ}").resolve()
    keeper = EngineKeeper(VLLMEngine(space.engine, EngineRegistry(args.run_dir.resolve() / "engines")))
    reps = []
    try:
        for i in range(args.reps):
            reps.append(one_rep(i, config, inputs, keeper, out_dir, args, limits, space.sla))
    finally:
        keeper.close()
    meta = {"created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "space": str(args.space),
            "engine": config.server.model_dump(exclude_none=True), "out_dir": str(out_dir),
            "sla": space.sla.model_dump(exclude_none=True)}
    text = render(reps, meta)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(f"written: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
