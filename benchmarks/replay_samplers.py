"""Sample efficiency of every sampler, replayed against the recorded table of real measurements.

    .venv/bin/python benchmarks/replay_samplers.py                       # every sampler, 20 seeds
    .venv/bin/python benchmarks/replay_samplers.py --samplers default random --seeds 2 --budget 10

Each replay runs the tuner's loop on an in-memory study: ask (in batches of the tuner's batch size), `suggest`,
then "measure" by looking the config up in the table (`benchmarks/record_table.py`) and drawing ONE of its
recorded repeats, so the noise a sampler sees is the engine's. Re-proposals follow autotune.search.repeats: not measured
or counted, told the config's observed estimate; after REPEAT_STREAK in a row an unmeasured config is enqueued.
After n counted trials a user keeps the Pareto front of what was OBSERVED (feasible only); we score it at the
configs' TRUE values (repeat means), as hypervolume relative to the true front's (pymoo's HV, every objective
minimised and scaled to [0, 1] over the truly feasible configs, reference point 1.1).
"""

from __future__ import annotations

import argparse
import csv
import datetime
import math
import random
import shlex
import sys
import time
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import optuna

from autotune.config.samplers import SAMPLERS
from autotune.config.space import SearchDefaults, SpaceConfig, load_space
from autotune.objectives import constraint_names, evaluate
from autotune.samplers.distributions import distributions
from autotune.samplers.optuna_sampler import (
    MAX_BATCH,
    ask_size,
    grid_size,
    make_sampler,
    set_constraints,
    suggest,
)
from autotune.search.repeats import PERMANENT_FAILURES, REPEAT_STREAK, enqueue_unmeasured

ROOT = Path(__file__).resolve().parents[1]
MARKS = (0.05, 0.10, 0.15, 0.25)  # budgets reported, as shares of the grid's trials
GOALS = (0.90, 0.95)
GOAL_SHARE, GOAL_HV, ALPHA = 0.10, 0.95, 0.05  # issue 21's goal: >= 95 % HV within 10 % of the grid
BOOKKEEPING = {"repeat", "trial", "state", "feasible", "fail_reason", "capacity_stop", "asked", "completed", "started",
               "item_scores"}
Key = tuple[tuple[str, str], ...]


def key_of(params: dict[str, Any]) -> Key:
    """A config's identity as the table spells it: sampled knobs only, values as csv writes them."""
    return tuple(sorted((k, str(v)) for k, v in params.items() if v is not None and v != ""))


def mean_metrics(obs: list[dict[str, float]]) -> dict[str, float]:
    names = {k for m in obs for k in m}
    return {k: float(np.mean([m[k] for m in obs if k in m])) for k in names}


@dataclass
class Table:
    path: Path
    rows: dict[Key, list[tuple[str, dict[str, float]]]]  # config -> its recorded repeats: (state, metrics)
    n_rows: int
    skipped: int  # rows neither COMPLETE nor FAIL (a trial still running in a partial export)

    def measure(self, key: Key, seed: int, k: int) -> tuple[str, dict[str, float]]:
        """The k-th measurement of a config in a replay of this seed: one recorded repeat, uniformly. Seeded by
        (seed, config, k), so every sampler of one seed draws the same repeat for it (common random numbers)."""
        if key not in self.rows:
            raise LookupError(f"config {dict(key)} is not in the table {self.path} ({len(self.rows)} configs): "
                              "the table must cover the space's grid (record it, or re-export a finished recording)")
        return random.Random(f"{seed}|{key}|{k}").choice(self.rows[key])

    def means(self) -> dict[Key, dict[str, float] | None]:
        """Per config, the mean of its complete repeats (None: no complete repeat, so infeasible)."""
        return {k: (mean_metrics([m for s, m in reps if s == "COMPLETE"]) if any(s == "COMPLETE" for s, _ in reps)
                    else None) for k, reps in self.rows.items()}


def load_table(path: Path, space: SpaceConfig) -> Table:
    knobs = list(distributions(space))
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        missing = [k for k in knobs if k not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{path}: no column for the sampled knob(s) {missing}: not a table of this space")
        raw = list(reader)
    rows: dict[Key, list[tuple[str, dict[str, float]]]] = {}
    skipped = 0
    for r in raw:
        if r["state"] not in ("COMPLETE", "FAIL"):
            skipped += 1
            continue
        metrics = {}
        for name, cell in r.items():
            if name in BOOKKEEPING or name in knobs or not cell:
                continue
            try:
                metrics[name] = float(cell)
            except ValueError:
                continue  # a flag such as engine_reused=True: not a metric
        if r["state"] == "FAIL":  # a failed repeat carries its reason (permanent ones are not run again)
            metrics = {"fail_reason": r.get("fail_reason") or ""}
        rows.setdefault(key_of({k: r[k] for k in knobs}), []).append((r["state"], metrics))
    return Table(path, rows, len(raw), skipped)


def objective_vector(metrics: dict[str, float], space: SpaceConfig) -> np.ndarray:
    """The objectives as the tuner evaluates them, every one minimised (maximised ones negated)."""
    values = evaluate(metrics, space.objectives, space.constraints).values
    return np.array([v if o.direction == "minimize" else -v for v, o in zip(values, space.objectives, strict=True)])


class Truth:
    """The true (repeat-mean) value of every config; hypervolume of config sets relative to the true front."""

    def __init__(self, table: Table, space: SpaceConfig):
        from pymoo.indicators.hv import HV

        means = table.means()
        feasible = {k: m for k, m in means.items()
                    if m is not None and evaluate(m, space.objectives, space.constraints).feasible}
        if not feasible:
            raise ValueError(f"{table.path}: no config's repeat means satisfy the constraints: no true front")
        raw = {k: objective_vector(m, space) for k, m in feasible.items()}
        F = np.array(list(raw.values()))
        lo, hi = F.min(axis=0), F.max(axis=0)
        span = np.where(hi > lo, hi - lo, 1.0)  # an objective every feasible config ties on scales to 0
        self.norm = {k: (v - lo) / span for k, v in raw.items()}
        self.hv = HV(ref_point=np.full(len(space.objectives), 1.1))
        self.total = float(self.hv(np.array(list(self.norm.values()))))
        self.n_configs, self.n_feasible = len(means), len(feasible)

    def fraction(self, keys) -> float:
        """HV of these configs at their true values / HV of the true front; truly infeasible ones add nothing."""
        pts = [self.norm[k] for k in keys if k in self.norm]
        return float(self.hv(np.array(pts))) / self.total if pts else 0.0


@dataclass
class Replay:
    sampler: str
    seed: int
    log: list[tuple[Key, str, dict[str, float]]] = field(default_factory=list)  # counted measurements, in order
    re_proposals: int = 0
    seconds: float = 0.0
    study: optuna.Study | None = None
    hv: list[float] = field(default_factory=list)  # after n counted trials: observed front at true values
    hv_optimistic: list[float] = field(default_factory=list)  # every measured config at its true value


def _tell(study: optuna.Study, trial: optuna.Trial, metrics: dict[str, float], space: SpaceConfig) -> None:
    ev = evaluate(metrics, space.objectives, space.constraints)  # as search/one_trial._record
    set_constraints(trial, constraint_names(space.constraints, metrics), ev.violations)
    study.tell(trial, ev.values)


def replay(table: Table, space: SpaceConfig, sampler: str, seed: int, budget: int, batch: int,
           n_trials: int) -> Replay:
    """One seeded study of `budget` counted trials, the tuner's loop (autotune.search.study.run_search) with the table
    standing in for the engine."""
    out = Replay(sampler, seed)
    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study = optuna.create_study(directions=[o.direction for o in space.objectives],
                                    sampler=make_sampler(sampler, seed, n_trials, space))
        observed: dict[Key, list[dict[str, float]]] = {}  # complete observations ("measured": search/repeats.py)
        first: dict[Key, int] = {}
        failed_for_good: set[Key] = set()  # failed for their own reasons (search/repeats.py)
        draws: Counter[Key] = Counter()
        streak = 0
        while len(out.log) < budget:
            asked = []
            # the tuner's batch rule (autotune.search.study): all asked before any is told. The tuner then runs a batch
            # grouped by server part; with no engine here the order changes nothing the sampler sees
            for _ in range(min(ask_size(study.sampler, study, batch, n_trials), MAX_BATCH, budget - len(out.log))):
                asked.append(study.ask())
                suggest(asked[-1], space)
            for trial in asked:
                key = key_of(trial.params)
                if key in observed:  # repeats.tell_repeat: the known estimate, not measured, not counted
                    trial.set_user_attr("duplicate_of", first[key])
                    _tell(study, trial, mean_metrics(observed[key]), space)
                    out.re_proposals += 1
                    streak += 1
                    continue
                if key in failed_for_good:  # repeats.tell_failed_repeat: FAIL again, not run, not counted
                    trial.set_user_attr("duplicate_of", first[key])
                    study.tell(trial, state=optuna.trial.TrialState.FAIL)
                    out.re_proposals += 1
                    streak += 1
                    continue
                streak = 0
                state, metrics = table.measure(key, seed, draws[key])
                draws[key] += 1  # a transient failure proposed again is measured again, as the tuner does
                out.log.append((key, state, metrics))
                if state == "FAIL":  # a transient failure is measured again when proposed again, a permanent one not
                    trial.set_user_attr("fail_reason", metrics.get("fail_reason", ""))
                    study.tell(trial, state=optuna.trial.TrialState.FAIL)
                    if metrics.get("fail_reason") in PERMANENT_FAILURES:
                        failed_for_good.add(key)
                        first.setdefault(key, trial.number)
                    continue
                observed.setdefault(key, []).append(metrics)
                first.setdefault(key, trial.number)
                _tell(study, trial, metrics, space)
            if streak >= REPEAT_STREAK:
                if not enqueue_unmeasured(study, space, seed, streak):
                    break  # every config is measured
                streak = 0
    out.seconds = time.perf_counter() - started
    out.study = study
    return out


def score(rep: Replay, truth: Truth, space: SpaceConfig, budget: int) -> None:
    """Fill the replay's HV curves, one value per counted trial (the last repeated if the replay ran out)."""
    from pymoo.util.nds.non_dominated_sorting import find_non_dominated

    observed: dict[Key, list[dict[str, float]]] = {}
    tried: set[Key] = set()
    for key, state, metrics in rep.log:
        tried.add(key)
        if state == "COMPLETE":
            observed.setdefault(key, []).append(metrics)
        seen = {k: mean_metrics(obs) for k, obs in observed.items()}
        ok = [k for k, m in seen.items() if evaluate(m, space.objectives, space.constraints).feasible]
        front = [ok[i] for i in find_non_dominated(np.array([objective_vector(seen[k], space) for k in ok]))] \
            if ok else []
        rep.hv.append(truth.fraction(front))
        rep.hv_optimistic.append(truth.fraction(tried))
    for curve in (rep.hv, rep.hv_optimistic):
        curve.extend([curve[-1] if curve else 0.0] * (budget - len(curve)))


# --- report ------------------------------------------------------------------------------------------------------


def first_reach(curve: list[float], goal: float) -> float:
    return next((n for n, v in enumerate(curve, 1) if v >= goal - 1e-12), math.inf)


def _q(values) -> str:
    lo, med, hi = np.percentile(values, [25, 50, 75])
    return f"{med:.2f} [{lo:.2f}, {hi:.2f}]"


def _reach(curves: list[list[float]], goal: float, budget: int) -> str:
    ns = [first_reach(c, goal) for c in curves]
    med, never = float(np.median(ns)), sum(math.isinf(n) for n in ns)
    text = f">{budget}" if math.isinf(med) else f"{med:g}"
    return text + (f" ({never}/{len(ns)} never)" if never else "")


def summarise(results: dict[str, list[Replay]], default: str, grid: int, budget: int) -> tuple[list[str], str]:
    """The markdown table's lines and the verdict on the default sampler's goal."""
    from scipy.stats import mannwhitneyu

    marks = {f: math.ceil(round(f * grid, 9)) for f in MARKS}
    head = ["sampler", *[f"HV @ {n} ({f:.0%})" for f, n in marks.items()],
            *[f"trials to {g:.0%}" for g in GOALS], f"optimistic HV @ {marks[GOAL_SHARE]}", "re-proposals / replay",
            "s / replay"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for label, reps in results.items():
        hv = [r.hv for r in reps]
        cells = [label, *[_q([c[n - 1] for c in hv]) if n <= budget else "-" for n in marks.values()],
                 *[_reach(hv, g, budget) for g in GOALS],
                 _q([r.hv_optimistic[marks[GOAL_SHARE] - 1] for r in reps]) if marks[GOAL_SHARE] <= budget else "-",
                 f"{np.mean([r.re_proposals for r in reps]):.1f}", f"{np.mean([r.seconds for r in reps]):.2f}"]
        lines.append("| " + " | ".join(cells) + " |")
    n = marks[GOAL_SHARE]
    if n > budget or "random" not in results or default not in results:
        return lines, f"goal not evaluable: needs the default sampler, random and a budget >= {n}"
    d = [r.hv[n - 1] for r in results[default]]
    rnd = [r.hv[n - 1] for r in results["random"]]
    p = float(mannwhitneyu(d, rnd, alternative="greater").pvalue) if len(set(d + rnd)) > 1 else 1.0
    med = float(np.median(d))
    holds = med >= GOAL_HV and p < ALPHA
    verdict = (f"{default} vs random at {n} trials ({GOAL_SHARE:.0%} of {grid}): median HV {med:.3f} vs "
               f"{np.median(rnd):.3f}; one-sided Mann-Whitney U (default > random) p = {p:.3g}.\n\n"
               f"**Goal (median HV >= {GOAL_HV:.0%} at <= {n} trials and beats random at alpha {ALPHA}): "
               f"{'holds' if holds else 'does not hold'}** (median {med:.3f} {'>=' if med >= GOAL_HV else '<'} "
               f"{GOAL_HV}, p {'<' if p < ALPHA else '>='} {ALPHA}).")
    return lines, verdict


def plot(results: dict[str, list[Replay]], grid: int, budget: int, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, ax = plt.subplots(figsize=(9, 5.5))
    x = np.arange(1, budget + 1)
    for label, reps in results.items():
        lo, med, hi = np.percentile(np.array([r.hv for r in reps]), [25, 50, 75], axis=0)
        (line,) = ax.plot(x, med, label=label, lw=2.2 if label.startswith("default") else 1.2)
        ax.fill_between(x, lo, hi, color=line.get_color(), alpha=0.12)
    ax.axhline(GOAL_HV, color="grey", ls=":", lw=1)
    ax.axvline(math.ceil(round(GOAL_SHARE * grid, 9)), color="grey", ls="--", lw=1, label=f"{GOAL_SHARE:.0%} of grid")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set(xlim=(1, budget), ylim=(0, 1), xlabel="counted trials (re-proposals excluded)",
           ylabel="HV of observed front at true values / true front",
           title=f"Sample efficiency on the recorded table ({grid}-config grid): median and IQR over seeds")
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    d = SearchDefaults()
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--table", type=Path, default=ROOT / "benchmarks/table/table.csv")
    ap.add_argument("--space", type=Path, default=ROOT / "benchmarks/table/space.yaml")
    ap.add_argument("--samplers", nargs="+", default=["default", *[s for s in SAMPLERS if s != "grid"]],
                    help=f"names from {list(SAMPLERS)}, or `default` (the tuner's: {d.sampler}, batch {d.batch})")
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--budget", type=int, help="counted trials per replay (default: half the grid)")
    ap.add_argument("--batch", type=int, default=d.batch, help="trials asked at once for the named samplers "
                    "(default: the tuner's); `default` always uses the tuner's")
    ap.add_argument("--sampler-n-trials", type=int, help="n_trials the samplers are built for (population sizes, "
                    f"startup trials); default: {GOAL_SHARE * 100:.0f}%% of the grid, what a user aiming at the goal "
                    "sets")
    ap.add_argument("--out", type=Path, default=ROOT / "reports/benchmarks")
    args = ap.parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.WARNING)

    space = load_space(args.space, check_paths=False)
    grid = grid_size(space)
    budget = args.budget or math.ceil(grid / 2)
    n_trials = args.sampler_n_trials or math.ceil(round(GOAL_SHARE * grid, 9))
    table = load_table(args.table, space)
    truth = Truth(table, space)
    print(f"{args.table}: {table.n_rows} rows, {len(table.rows)} of {grid} grid configs"
          f"{f', {table.skipped} rows neither COMPLETE nor FAIL (ignored)' if table.skipped else ''}; "
          f"{truth.n_feasible} truly feasible")
    default = f"default ({d.sampler}, batch {d.batch})"
    plan = {default if s == "default" else s: (d.sampler, d.batch) if s == "default" else (s, args.batch)
            for s in args.samplers}
    if default in plan:  # the named sampler the default is (same batch) would be a duplicate row
        plan = {k: v for k, v in plan.items() if k == default or v != plan[default]}
    results: dict[str, list[Replay]] = {}
    for label, (name, batch) in plan.items():
        results[label] = []
        for seed in range(args.seeds):
            rep = replay(table, space, name, seed, budget, batch, n_trials)
            score(rep, truth, space, budget)
            results[label].append(rep)
        print(f"{label}: {args.seeds} replays in {sum(r.seconds for r in results[label]):.1f} s", flush=True)

    lines, verdict = summarise(results, default, grid, budget)
    command = " ".join(shlex.quote(a) for a in [".venv/bin/python", "benchmarks/replay_samplers.py",
                                                *(sys.argv[1:] if argv is None else argv)])
    header = [
        "# Sampler sample efficiency on the recorded table", "",
        f"- table: `{args.table}` ({table.n_rows} rows, {len(table.rows)} configs, {truth.n_feasible} truly "
        f"feasible); space `{args.space}`, grid {grid} configs",
        f"- seeds: {args.seeds}; budget: {budget} counted trials per replay; batch {args.batch}; samplers built "
        f"for n_trials = {n_trials}; `default` is what the tuner ships ({d.sampler}, batch {d.batch}), not repeated "
        "as a row of its own",
        f"- date: {datetime.date.today().isoformat()}; command: `{command}`",
        "- HV: the observed feasible Pareto front after n counted trials, at the configs' true (repeat-mean) "
        "values, / the true front's; cells are median [IQR] over seeds; `trials to X` is the first n reaching X "
        "(median over seeds, never-reaching seeds counted as beyond the budget); optimistic: every measured config "
        "at its true value", "",
    ]
    text = "\n".join([*header, *lines, "", verdict, ""])
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "sample_efficiency.md").write_text(text)
    with (args.out / "sample_efficiency.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["sampler", "seed", "trials", "hv_fraction", "hv_fraction_optimistic", "state", "config"])
        for label, reps in results.items():
            for r in reps:
                for n in range(budget):
                    key, state = (r.log[n][0], r.log[n][1]) if n < len(r.log) else ((), "")
                    w.writerow([label, r.seed, n + 1, f"{r.hv[n]:.6f}", f"{r.hv_optimistic[n]:.6f}", state,
                                ";".join(f"{k}={v}" for k, v in key)])
    plot(results, grid, budget, args.out / "sample_efficiency.png")
    print(f"wrote {args.out}/sample_efficiency.{{md,csv,png}}")


if __name__ == "__main__":
    try:
        main()
    except (LookupError, ValueError) as err:  # a table that does not fit the space: the message, not a traceback
        sys.exit(f"replay_samplers: {err}")
