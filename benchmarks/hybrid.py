"""A stronger FM in a simple architecture against smaller FMs in a complex one, and mixed plans (issue 23): one
study, one front of quality x capacity x $ per 1k tasks, on this host.

    .venv/bin/python benchmarks/hybrid.py                          # qwen2.5-coder-0.5b vs smollm2-135m
    .venv/bin/python benchmarks/hybrid.py --strong MODEL --small MODEL --dtype bfloat16

Both models are self-hosted on this host: the small one is the study's own engine, the strong one a second engine
(`endpoints.strong`, `kind: vllm`) the search launches on the first plan that routes to it and keeps. They share
the host: each engine's OpenMP threads are bound to their own cores (`--cores`: the small engine's, then the
strong engine's), no core is reserved for either API server, and each gets `--kv-gb` of KV cache; the report
states the split. Cost is the host's hours over the plan's capacity (both engines live on it). Plans (enqueued, so
exactly these run, with the capacity protocol and the paired evaluation set):

1. strong, one call;            2. small, one call;    3. small, parallel;    4. small, sequential;
5. small agents + small judge;  6. small agents + strong judge (the mixed plan).

Writes `reports/fmware/hybrid.md` and `hybrid.png` (quality against $ per 1k tasks, capacity as the marker size).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
SERVER = ("dtype", "enforce_eager", "block_size", "max_model_len", "max_num_seqs", "max_num_batched_tokens",
          "enable_prefix_caching", "enable_chunked_prefill")  # the strong engine takes these from the plans' space
PLANS = [
    ("strong, one call", {"architecture": "one_call", "route_one_call": "strong"}),
    ("small, one call", {"architecture": "one_call", "route_one_call": "engine"}),
    ("small, parallel", {"architecture": "parallel"}),
    ("small, sequential", {"architecture": "sequential"}),
    ("small agents + small judge", {"architecture": "judge", "route_judge": "engine"}),
    ("small agents + strong judge", {"architecture": "judge", "route_judge": "strong"}),
]


def plan_space(base: dict, small: str, strong: str, dtype: str | None, cores: tuple[str, str], kv_gb: int,
               workload: str, n: int) -> dict:
    """The study's space: the base space's engine, hardware, SLA and the knobs the plans do not set (a searched
    one at its warm-start value: the application a user starts from), the small model on its cores, the strong
    one as the self-hosted `endpoints.strong` on the same server settings and the other cores, the plans
    enqueued."""
    warm = (base.get("search", {}).get("enqueue") or [{}])[0]
    knobs = {k: v if "choices" not in v else {"value": warm.get(k, v["choices"][0])}
             for k, v in base.get("knobs", {}).items()
             if k not in ("model", "quantization", "architecture", "judge_rounds", "cpu_threads_bind",
                          "cpu_reserved_cores", "kv_cache_space_gb") and not k.startswith("route_")}
    knobs = {k: {kk: vv for kk, vv in v.items() if kk != "when"} for k, v in knobs.items()}
    if dtype:
        knobs["dtype"] = {"value": dtype}
    server = {k: v["value"] for k, v in knobs.items() if k in SERVER and "value" in v}
    knobs = {"model": {"value": small}, "kv_cache_space_gb": {"value": kv_gb},
             "cpu_threads_bind": {"value": cores[0]}, "cpu_reserved_cores": {"value": 0}, **knobs,
             "architecture": {"choices": ["one_call", "parallel", "sequential", "judge"]},
             "judge_rounds": {"value": 1, "when": {"architecture": ["judge"]}},
             "route_one_call": {"choices": ["engine", "strong"], "when": {"architecture": ["one_call"]}},
             "route_judge": {"choices": ["engine", "strong"], "when": {"architecture": ["judge"]}}}
    return {"name": "hybrid", "description": "strong FM simple vs small FMs complex, and mixed (benchmarks/hybrid.py)",
            "workload": workload, "engine": base.get("engine", {}), "hardware": base.get("hardware", {}),
            "endpoints": {"strong": {**base.get("engine", {}), "kind": "vllm",
                                     "server": {**server, "model": strong, "kv_cache_space_gb": kv_gb,
                                                "cpu_threads_bind": cores[1], "cpu_reserved_cores": 0}}},
            "knobs": knobs, **({"objectives": base["objectives"]} if base.get("objectives") else {}),
            "constraints": [c for c in base.get("constraints", []) if c.get("metric") != "quality"],
            "sla": base.get("sla", {}),
            "search": {"n_trials": n, "sampler": "random", "seed": 0, "batch": 1, "max_failures": n,
                       "noise_repeats": 0, "enqueue": [p for _, p in PLANS]}}


def rows_of(study) -> list[dict]:
    """One row per plan: its capacity (bracket), cost (hosted + API), quality with its interval, items."""
    by_params = {json.dumps(p, sort_keys=True): name for name, p in PLANS}
    out = []
    for t in study.trials:
        name = by_params.get(json.dumps({k: v for k, v in t.params.items()}, sort_keys=True), "")
        m = t.user_attrs.get("metrics", {})
        out.append({"plan": name or json.dumps(t.params), "trial": t.number, "state": t.state.name,
                    "fail": t.user_attrs.get("fail_reason", ""), "items": t.user_attrs.get("item_scores") or {},
                    **{k: m.get(k) for k in ("capacity_tps", "capacity_low", "capacity_high", "usd_per_1k_tasks",
                                             "usd_per_1k_tasks_hosted", "usd_per_1k_tasks_api", "quality",
                                             "quality_ci_low", "quality_ci_high", "p95_task_ms_at_load",
                                             "fm_calls_per_task")}})
    return out


def render(rows: list[dict], meta: dict) -> str:
    """The table, each plan's paired quality against the strong one-call plan, and the answer in words."""
    from autotune.measure.compare import paired_quality

    ref = next((r for r in rows if r["plan"] == PLANS[0][0] and r["state"] == "COMPLETE"), None)

    def num(x, fmt="{:.3g}") -> str:
        return "-" if x is None else fmt.format(x)

    lines = ["# A stronger FM in a simple architecture, or smaller FMs in a complex one", "",
             f"{meta['created']}; small `{meta['small']}` (the study's engine), strong `{meta['strong']}` (a second "
             f"self-hosted engine), both {meta['dtype']}; cores: small {meta['cores'][0]}, strong "
             f"{meta['cores'][1]}, {meta['kv_gb']} GiB KV each; cost = the host's hours over the plan's capacity. "
             f"Study `{meta['study_dir']}`.", "",
             "| plan | capacity at SLA (tasks/s) [bracket] | $ / 1k tasks (hosted + API) | quality [95% CI] | "
             "vs strong one call (paired) | FM calls / task |", "|---|---|---|---|---|---|"]
    for r in rows:
        if r["state"] != "COMPLETE":
            lines.append(f"| {r['plan']} | failed: {r['fail']} | | | | |")
            continue
        d = paired_quality(ref["items"], r["items"]) if ref and r is not ref and r["items"] else None
        vs = "-" if d is None else f"{d.delta:+.3f} [{d.low:+.3f}, {d.high:+.3f}], p = {d.p:.2g}"
        lines.append(f"| {r['plan']} | {num(r['capacity_tps'])} [{num(r['capacity_low'])}, {num(r['capacity_high'])})"
                     f" | {num(r['usd_per_1k_tasks'], '{:.4g}')} ({num(r['usd_per_1k_tasks_hosted'], '{:.4g}')} + "
                     f"{num(r['usd_per_1k_tasks_api'], '{:.4g}')}) | {num(r['quality'])} [{num(r['quality_ci_low'])}, "
                     f"{num(r['quality_ci_high'])}] | {vs} | {num(r['fm_calls_per_task'])} |")
    return "\n".join(lines) + "\n"


def figure(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for r in rows:
        if r["state"] == "COMPLETE" and r["usd_per_1k_tasks"] is not None and r["quality"] is not None:
            ax.scatter(r["usd_per_1k_tasks"], r["quality"], s=40 + 200 * (r["capacity_tps"] or 0))
            ax.annotate(r["plan"], (r["usd_per_1k_tasks"], r["quality"]), fontsize=8, xytext=(4, 4),
                        textcoords="offset points")
    ax.set_xscale("log")
    ax.set_xlabel("$ per 1k tasks (hosted hours at capacity + API tokens)")
    ax.set_ylabel("quality (fixed evaluation set)")
    ax.set_title("plans: marker size = capacity at SLA")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--space", type=Path, default=REPO / "search_spaces" / "quickstart.yaml",
                    help="engine, hardware, SLA, objectives and fixed knobs from here")
    ap.add_argument("--strong", default="qwen2.5-coder-0.5b")
    ap.add_argument("--small", default="smollm2-135m")
    ap.add_argument("--dtype", help="both engines' dtype (default: the base space's)")
    ap.add_argument("--cores", nargs=2, default=("0", "1"), metavar=("SMALL", "STRONG"))
    ap.add_argument("--kv-gb", type=int, default=1)
    ap.add_argument("--run-dir", type=Path, default=Path("runs/hybrid"))
    ap.add_argument("--out", type=Path, default=REPO / "reports" / "fmware" / "hybrid.md")
    args = ap.parse_args(argv)

    base = yaml.safe_load(args.space.read_text())
    args.run_dir.mkdir(parents=True, exist_ok=True)
    workload = str((args.space.parent / base["workload"]).resolve())
    space = plan_space(base, args.small, args.strong, args.dtype, tuple(args.cores), args.kv_gb, workload, len(PLANS))
    space_file = args.run_dir / "hybrid-space.yaml"
    space_file.write_text(yaml.safe_dump(space, sort_keys=False))
    code = subprocess.call([str(REPO / ".venv/bin/autotune"), "search", "--space", str(space_file),
                            "--run-dir", str(args.run_dir)])
    if code not in (0, 3):
        return code
    import optuna

    study = optuna.load_study(study_name="hybrid", storage=f"sqlite:///{(args.run_dir / 'optuna.db').resolve()}")
    rows = rows_of(study)
    meta = {"created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "small": args.small,
            "strong": args.strong, "dtype": args.dtype or base.get("knobs", {}).get("dtype", {}).get("value", "auto"),
            "cores": args.cores, "kv_gb": args.kv_gb,
            "study_dir": str(args.run_dir)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(render(rows, meta))
    figure(rows, args.out.with_suffix(".png"))
    print(args.out.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
