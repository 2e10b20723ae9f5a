"""Print the per-trial economics of a finished study: startup vs measurement time, throughput, the front.

    .venv/bin/python benchmarks/study_figures.py [--run-dir runs] [--study quickstart]

Figures come from the Optuna storage the search wrote (nothing is re-measured). Ratios printed:
measurement share of trial wall time, and startup share, per trial and for the study.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import optuna


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run-dir", default="runs")
    ap.add_argument("--study", default="quickstart")
    args = ap.parse_args()
    storage = f"sqlite:///{(Path(args.run_dir) / 'optuna.db').resolve()}"
    study = optuna.load_study(study_name=args.study, storage=storage)
    cols = ("startup_s", "measure_s", "trial_wall_s", "measure_share", "output_tokens_per_s", "requests_per_s",
            "p95_ttft_ms", "p95_e2e_ms", "quality", "loadgen_cpu_share")
    print(f"{'trial':>5} {'state':>8} " + " ".join(f"{c:>19}" for c in cols) + "  params")
    totals = {"startup_s": 0.0, "measure_s": 0.0, "trial_wall_s": 0.0}
    for t in study.trials:
        m = t.user_attrs.get("metrics", {})
        for k in totals:
            totals[k] += m.get(k, 0.0)
        vals = " ".join(f"{m.get(c, float('nan')):>19.3f}" for c in cols)
        reason = t.user_attrs.get("fail_reason", "")
        print(f"{t.number:>5} {t.state.name:>8} {vals}  {t.params} {reason}")
    wall = totals["trial_wall_s"]
    if wall:
        print(f"\nstudy: {wall:.0f} s in complete trials; startup {totals['startup_s']:.0f} s "
              f"({totals['startup_s'] / wall:.0%}), measurement {totals['measure_s']:.0f} s "
              f"({totals['measure_s'] / wall:.0%})")
    front = [t.number for t in study.best_trials if t.user_attrs.get("feasible", True)]
    print(f"Pareto front (feasible, by Optuna): trials {front}")


if __name__ == "__main__":
    main()
