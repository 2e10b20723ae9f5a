"""Trial economy of a finished study: where the trials' wall time went, and how much of it measured something.

    .venv/bin/python benchmarks/economy.py --run-dir runs --study quickstart [--out reports/benchmarks]

Prints (and writes `economy-<study>.md`): the measurement share (seconds inside level windows over trial wall
seconds), the share of load applied (warmup + window + drain), engine launches and reuses, each launch's startup
split from the engine log (interpreter and imports of the API server, engine core and worker processes, weight
load, profile/KV/warm-up/compile, API ready), and the per-level overheads (load-generator start, warmup, drain,
settle). Only the study's search trials count (failed ones with the time from their start to their end);
confirmation windows are not included.
"""

from __future__ import annotations

import argparse
import datetime
import json
import re
import statistics
from pathlib import Path

LOG_TIME = re.compile(r"\((\w+) pid=\d+\) \w+ (\d\d-\d\d \d\d:\d\d:\d\d)")
MARKS = (  # (name, pattern): the first log line matching each, in launch order
    ("api_server_up", re.compile(r"\(APIServer pid=\d+\) INFO")),
    ("engine_core_up", re.compile(r"\(EngineCore pid=\d+\) INFO")),
    ("worker_up", re.compile(r"\(Worker pid=\d+\) INFO|Starting to load model")),
    ("weights_loaded", re.compile(r"Loading weights took|Model loading took")),
    ("engine_ready", re.compile(r"init engine \(profile, create kv cache, warmup model\) took")),
    ("api_ready", re.compile(r"Starting vLLM server|Application startup complete")),
)


def launch_split(log: Path, startup_s: float) -> dict[str, float]:
    """Seconds per launch phase from one engine log (1-s log resolution); the process start is ready - startup_s."""
    times: dict[str, datetime.datetime] = {}
    for line in log.read_text(errors="replace").splitlines():
        m = LOG_TIME.search(line)
        if not m:
            continue
        stamp = datetime.datetime.strptime("2000-" + m.group(2), "%Y-%m-%d %H:%M:%S")
        for name, pattern in MARKS:
            if name not in times and pattern.search(line):
                times[name] = stamp
    if "api_ready" not in times:
        return {}
    start = times["api_ready"] - datetime.timedelta(seconds=startup_s)
    out, last = {}, start
    for name, _ in MARKS:
        if name in times:
            out[name] = max(0.0, (times[name] - last).total_seconds())
            last = times[name]
    compile_s = re.findall(r"torch\.compile takes ([\d.]+) s in total", log.read_text(errors="replace"))
    if compile_s:
        out["of which torch.compile"] = float(compile_s[0])
    return out


def level_parts(trial_dir: Path) -> list[dict[str, float]]:
    """Per level: wall, window, warmup, drain, load-generator start/teardown, settle."""
    rows_file = trial_dir / "capacity_levels.json"
    if not rows_file.is_file():
        return []
    rows = json.loads(rows_file.read_text())
    out = []
    for i, row in enumerate(rows):
        # one load process writes summary.json; distributed mode one summary per process (the same window)
        files = sorted((trial_dir / "levels" / f"level-{i:02d}").glob("summary*.json"))
        if not files:
            continue
        s = json.loads(files[0].read_text())
        warmup = s["warmup_end"] - s["t0"]
        out.append({"wall": row["wall_s"], "window": s["measure_s"], "warmup": warmup, "drain": s["drain_s"],
                    "loadgen_start": row["wall_s"] - s["loadgen_wall_s"], "settle": row.get("settle_s") or 0.0})
    return out


def economy(run_dir: Path, study_name: str) -> dict:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name=study_name, storage=f"sqlite:///{run_dir / 'optuna.db'}")
    trials = [t for t in study.trials if t.state.is_finished() and t.user_attrs.get("duplicate_of") is None
              and not t.user_attrs.get("interrupted") and t.user_attrs.get("metrics")]
    failed = [t for t in study.trials if t.state.name == "FAIL" and not t.user_attrs.get("interrupted")
              and t.user_attrs.get("duplicate_of") is None and t.user_attrs.get("began") and t.datetime_complete]
    failed_s = sum(t.datetime_complete.timestamp() - t.user_attrs["began"] for t in failed)  # a failed launch's time
    wall = sum(t.user_attrs["metrics"]["trial_wall_s"] for t in trials) + failed_s
    window = sum(t.user_attrs["metrics"].get("measure_s", 0.0) for t in trials)
    launches = [t for t in trials if not t.user_attrs["metrics"].get("engine_reused")]
    levels = [p for t in trials for p in level_parts(run_dir / study_name / f"trial-{t.number:04d}")]
    load = sum(p["warmup"] + p["window"] + p["drain"] for p in levels)
    splits = [s for t in launches if (s := launch_split(run_dir / study_name / f"trial-{t.number:04d}" / "engine.log",
                                                          t.user_attrs["metrics"].get("startup_s", 0.0)))]
    starts = [t.datetime_start for t in study.trials if t.datetime_start]
    ends = [t.datetime_complete for t in study.trials if t.datetime_complete]
    span = (max(ends) - min(starts)).total_seconds() if starts and ends else float("nan")
    startup = [t.user_attrs["metrics"].get("startup_s", 0.0) for t in launches]
    completion = sum(t.user_attrs["metrics"].get("eval_completion_s", 0.0) for t in trials)
    standby_wait = sum(t.user_attrs["metrics"].get("loadgen_standby_wait_s", 0.0) for t in trials)
    return {
        "study": study_name, "trials": len(trials), "failed_trials": len(failed), "failed_s": failed_s,
        "search_span_s": span, "trial_wall_s": wall,
        "window_s": window, "measurement_share": window / wall if wall else float("nan"),
        "load_share": load / wall if wall else float("nan"), "launches": len(launches),
        "reuses": len(trials) - len(launches), "distinct_server_parts": len({json.dumps(t.user_attrs.get("server"),
                                                                                     sort_keys=True)
                                                                          for t in trials}),
        "startup_s_total": sum(startup), "startup_s_mean": statistics.mean(startup) if startup else float("nan"),
        "completion_pass_s": completion, "standby_wait_s": standby_wait, "levels": len(levels),
        "level_overheads_s": {k: sum(p[k] for p in levels) for k in ("warmup", "drain", "loadgen_start", "settle")},
        "launch_split_mean_s": {k: statistics.mean(s.get(k, 0.0) for s in splits) for k in splits[0]} if splits
        else {},
    }


def markdown(e: dict) -> str:
    wall = e["trial_wall_s"]
    other = (wall - e["window_s"] - sum(e["level_overheads_s"].values()) - e["startup_s_total"]
             - e["completion_pass_s"] - e["failed_s"] - e.get("standby_wait_s", 0.0))
    lines = [
        f"# Trial economy: study `{e['study']}`", "",
        f"- trials: {e['trials']} measured, {e['failed_trials']} failed ({e['failed_s']:.0f} s), search span "
        f"{e['search_span_s'] / 60:.1f} min, trial wall {wall / 60:.1f} min",
        f"- **measurement share: {e['measurement_share']:.1%}** (seconds inside level windows / trial wall); "
        f"with the evaluation pass (the quality window): {(e['window_s'] + e['completion_pass_s']) / wall:.1%}; "
        f"load applied (warmup + window + drain): {e['load_share']:.1%}; **evaluation completion pass: "
        f"{e['completion_pass_s'] / wall:.1%}** of trial wall",
        f"- engine launches {e['launches']}, reuses {e['reuses']}, distinct server parts {e['distinct_server_parts']}"
        f"; startup {e['startup_s_total']:.0f} s in all ({e['startup_s_mean']:.1f} s per launch)", "",
        "| where the trial wall time went | seconds | share |", "|---|---|---|",
        f"| level windows (measurement) | {e['window_s']:.0f} | {e['window_s'] / wall:.1%} |",
    ]
    for name, secs in e["level_overheads_s"].items():
        lines.append(f"| level {name.replace('_', ' ')} | {secs:.0f} | {secs / wall:.1%} |")
    lines += [f"| engine launches | {e['startup_s_total']:.0f} | {e['startup_s_total'] / wall:.1%} |",
              f"| evaluation completion pass | {e['completion_pass_s']:.0f} | {e['completion_pass_s'] / wall:.1%} |",
              f"| load generators importing before the first level (reused engine) | "
              f"{e.get('standby_wait_s', 0.0):.0f} | {e.get('standby_wait_s', 0.0) / wall:.1%} |",
              f"| failed trials | {e['failed_s']:.0f} | {e['failed_s'] / wall:.1%} |",
              f"| other (scoring, artifacts, MLflow, reading results) | {other:.0f} | {other / wall:.1%} |", ""]
    if e["launch_split_mean_s"]:
        lines += ["| launch phase (mean over launches, 1-s log resolution) | seconds |", "|---|---|"]
        labels = {"api_server_up": "interpreter + imports, API server", "engine_core_up": "engine core process "
                  "(spawned: imports again)", "worker_up": "worker process (spawned: imports again)",
                  "weights_loaded": "weight load", "engine_ready": "profile, KV cache, warm-up (and compile)",
                  "api_ready": "API server ready"}
        lines += [f"| {labels.get(k, k)} | {v:.1f} |" for k, v in e["launch_split_mean_s"].items()]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run-dir", type=Path, default=Path("runs"))
    ap.add_argument("--study", default="quickstart")
    ap.add_argument("--out", type=Path, default=None, help="folder for economy-<study>.md")
    args = ap.parse_args()
    e = economy(args.run_dir, args.study)
    text = markdown(e)
    print(text)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / f"economy-{args.study}.md").write_text(text)


if __name__ == "__main__":
    main()
