"""Measurement fidelity of a run directory: does the client see what the server saw, and did the load generator
offer what it was asked to?

For every load window (a capacity level, or a fixed-load trial window) under RUN_DIR it prints:
- client mean TTFT and end-to-end latency of the window's successful FM calls against the means of vLLM's own
  `/metrics` histograms over the window (`vllm:time_to_first_token_seconds`, `vllm:e2e_request_latency_seconds`);
- for open-loop windows, the achieved task rate (tasks started in the window / window) against the target, and
  the tasks started against the arrivals the seeded schedule put in the window. A short window's Poisson count
  varies around the target by about 1/sqrt(rate x window) (40 % at 0.5 tasks/s for 12 s): the rate column shows
  that sampling noise, the schedule column the generator's own fidelity;
then the share of windows within 5 %. The client calls compared are those that ended between the two scrapes,
the set the server's histogram delta counts (TTFT: first token in the window; e2e: call ended in it).
Usage: .venv/bin/python benchmarks/fidelity.py runs/ [--study NAME]
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from autotune.engines.prometheus import parse_metrics, window_deltas
from autotune.loadgen.records import read_jsonl


def window(load_dir: Path) -> dict[str, float] | None:
    summary_path = load_dir / "summary.json"
    before, after = load_dir / "metrics-before.txt", load_dir / "metrics-after.txt"
    if not (summary_path.is_file() and before.is_file() and after.is_file()):
        return None
    summary = json.loads(summary_path.read_text())
    start, end = summary["warmup_end"], summary["warmup_end"] + summary["measure_s"]
    # like with like: the server observes TTFT when the first token is out and e2e when the call ends, so its
    # histogram deltas hold the calls whose first token (TTFT) or end (e2e) fell between the two scrapes
    records = [r for r in read_jsonl(load_dir / "requests.jsonl", missing_ok=True)
               if r.get("ok") and r.get("ttft_s") is not None]
    first = [r for r in records if start <= r["send_ts"] + r["ttft_s"] < end]
    calls = [r for r in records if start <= r["send_ts"] + r["e2e_s"] < end]
    if not calls or not first:
        return None
    d = window_deltas(parse_metrics(before.read_text()), parse_metrics(after.read_text()))
    out = {"client_ttft_ms": statistics.fmean(r["ttft_s"] for r in first) * 1000.0,
           "server_ttft_ms": d.get("server_ttft_mean_ms", float("nan")),
           "client_e2e_ms": statistics.fmean(r["e2e_s"] for r in calls) * 1000.0,
           "server_e2e_ms": d.get("server_e2e_mean_ms", float("nan")), "calls": len(calls)}
    arrival = summary.get("arrival") or {}
    if arrival.get("mode") == "poisson" and summary.get("measure_s"):
        tasks = [t for t in read_jsonl(load_dir / "tasks.jsonl", missing_ok=True) if t.get("phase") == "measure"]
        out["target_rate"] = arrival["rate"]
        out["achieved_rate"] = len(tasks) / summary["measure_s"]
        if "scheduled_in_window" in summary:  # the generator's own fidelity: started vs its seeded schedule
            out["scheduled"] = summary["scheduled_in_window"]
            out["started"] = len(tasks)
    return out


def ratio(a: float, b: float) -> float:
    return a / b - 1.0 if b and b == b and a == a else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("--study", default="*")
    args = ap.parse_args()
    rows = []
    for summary in sorted(args.run_dir.glob(f"{args.study}/trial-*/**/summary.json")):
        w = window(summary.parent)
        if w:
            rows.append((str(summary.parent.relative_to(args.run_dir)), w))
    ttft_all = []
    print(f"{'window':46} {'TTFT cl/srv':>12} {'e2e cl/srv':>11} {'rate ach/target':>16} {'started/sched':>14}")
    within = {"ttft": [], "e2e": [], "rate": [], "schedule": []}
    for name, w in rows:
        t, e = ratio(w["client_ttft_ms"], w["server_ttft_ms"]), ratio(w["client_e2e_ms"], w["server_e2e_ms"])
        r = ratio(w.get("achieved_rate", float("nan")), w.get("target_rate", float("nan")))
        g = ratio(w.get("started", float("nan")), w.get("scheduled", float("nan")))
        for key, v in (("ttft", t), ("e2e", e), ("rate", r), ("schedule", g)):
            if v == v:
                within[key].append(abs(v) <= 0.05)
        print(f"{name:46} {t:+12.1%} {e:+11.1%} {r:+16.1%} {g:+14.1%}")
        ttft_all.append(t)
    if ttft_all:
        print(f"TTFT client/server: median {statistics.median(ttft_all):+.1%}, range {min(ttft_all):+.1%} .. "
              f"{max(ttft_all):+.1%} (the client stamps the first *content* chunk, the server the first token)")
    for key, flags in within.items():
        if flags:
            print(f"{key}: {sum(flags)}/{len(flags)} windows within 5 % "
                  f"({'met' if all(flags) else 'NOT met'} for every window)")


if __name__ == "__main__":
    main()
