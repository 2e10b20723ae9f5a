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


def record(space: Path, run_dir: Path, repeats: int) -> list[dict]:
    """Run (or resume) one grid study per repeat; the seconds each invocation took."""
    log = []
    for r in range(1, repeats + 1):
        started = time.time()
        argv = [str(ROOT / ".venv/bin/autotune"), "search", "--space", str(space), "--sampler", "grid",
                "--study-name", f"table-r{r}", "--run-dir", str(run_dir)]
        code = subprocess.call(argv, cwd=ROOT)
        log.append({"repeat": r, "exit": code, "started": started, "wall_s": time.time() - started})
        print(f"repeat {r}: exit {code}, {log[-1]['wall_s'] / 60:.1f} min", flush=True)
        if code not in (0, 3):  # 3: failure budget; anything else is a broken run, not a table
            sys.exit(code)
    return log


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
                   "fail_reason": t.user_attrs.get("fail_reason", ""), **t.params,
                   **{k: m.get(k) for k in METRICS},
                   "started": t.datetime_start.isoformat() if t.datetime_start else "",
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--space", type=Path, default=ROOT / "benchmarks/table/space.yaml")
    ap.add_argument("--run-dir", type=Path, default=ROOT / "runs/table")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/table/table.csv")
    ap.add_argument("--export-only", action="store_true")
    args = ap.parse_args()
    if not args.export_only:
        log = record(args.space, args.run_dir, args.repeats)
        (args.out.parent / "recording.json").write_text(json.dumps(log, indent=2))
    export(args.run_dir, args.repeats, args.out)


if __name__ == "__main__":
    main()
