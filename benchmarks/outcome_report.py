"""The markdown report of benchmarks/outcome.py: every side side by side, every pair's ratios with their
intervals, the goal's verdict and the breakdown by knob family."""

from __future__ import annotations

import math
from typing import Any

TITLES = {"naive": "naive app on vLLM defaults", "defaults": "recommended app on vLLM defaults",
          "recommended": "recommended"}
FAMILY = {"defaults/naive": "the application (same defaults engine; architecture, format, prompt, constraint, "
                            "repair, cache together)",
          "recommended/defaults": "the engine (same application; every server knob together)",
          "recommended/naive": "everything"}


def fmt_ratio(x: float) -> str:
    return "n/a" if x != x else ("inf" if math.isinf(x) else f"{x:.2f}x")


def num(x: float, digits: int = 3) -> str:
    return "n/a" if x != x else ("inf" if math.isinf(x) else f"{x:.{digits}g}")


def _windows(xs: list[float], digits: int = 3) -> str:
    return "(" + ", ".join(num(x, digits) for x in xs) + ")" if len(xs) > 1 else ""


def ratio_cell(c: dict[str, Any]) -> str:
    """'2.31x [1.80x, 2.96x]' (the interval when there is one)."""
    low, high = c["capacity_low"], c["capacity_high"]
    return fmt_ratio(c["capacity_ratio"]) + (f" [{fmt_ratio(low)}, {fmt_ratio(high)}]" if low == low else "")


def quality_cell(c: dict[str, Any]) -> str:
    pq = c["paired_quality"]
    return "n/a" if pq["delta"] != pq["delta"] else (
        f"{pq['delta']:+.3f} [{pq['low']:+.3f}, {pq['high']:+.3f}], p = {pq['p']:.2g} ({pq['test']}, {pq['n']} items)")


def side_table(summary: dict[str, Any], rate: float) -> list[str]:
    """Capacity, cost, p95 at the operating load, quality and startup, one column per side."""
    sides = list(summary["sides"].values())

    def cell(s: dict[str, Any], key: str, windows: str, digits: int = 3) -> str:
        if not s["measured"]:
            return "not measured"
        return f"{num(s[key], digits)} {_windows(s[windows], digits)}".strip()

    def quality(s: dict[str, Any]) -> str:
        return "not measured" if not s["measured"] else (
            f"{s['quality']:.3f} [{num(s['quality_low'])}, {num(s['quality_high'])}] {_windows(s['quality_windows'])}"
        ).strip()

    rows = [("capacity at SLA (tasks/s; per window)", [cell(s, "capacity_tps", "capacity_windows") for s in sides]),
            ("$ per 1k tasks at capacity", [num(s["usd_per_1k_tasks"]) for s in sides]),
            (f"p95 task latency at the operating load ({num(rate)} tasks/s), ms",
             [cell(s, "p95_task_ms_at_load", "p95_windows", 4) for s in sides]),
            ("quality [95% CI over items] (per window)", [quality(s) for s in sides]),
            ("engine startup, s (per window)", [cell(s, "startup_s", "startup_windows") for s in sides])]
    out = ["| | " + " | ".join(TITLES.get(s["name"], s["name"]) for s in sides) + " |",
           "|---|" + "---|" * len(sides)]
    return out + [f"| {label} | " + " | ".join(cells) + " |" for label, cells in rows]


def pair_table(summary: dict[str, Any]) -> list[str]:
    """One row per pair: what it isolates, the capacity ratio with its interval, cost and p95 ratios, quality."""
    out = ["| pair | isolates | capacity ratio [95% CI] | cost ratio | p95 at load ratio | paired quality difference |",
           "|---|---|---|---|---|---|"]
    for key, c in summary["comparisons"].items():
        out.append(f"| {key} | {FAMILY.get(key, '')} | {ratio_cell(c)} | {fmt_ratio(c['cost_ratio'])} | "
                   f"{fmt_ratio(c['p95_ratio'])} | {quality_cell(c)} |")
    return out


def _side_lines(s: dict[str, Any], info: dict[str, Any]) -> list[str]:
    def shown(k: str, v: Any) -> bool:  # the knobs that act on this application
        client = s["client"]
        return v is not None and not (k == "cache_threshold" and not client["semantic_cache"]) \
            and not (k == "judge_rounds" and client["architecture"] != "judge")

    lines = [f"- engine flags: `{' '.join(info['flags'])}`",
             "- engine env: " + (", ".join(f"`{k}={v}`" for k, v in sorted(info["env"].items())) or "none"),
             "- application: " + ", ".join(f"{k}={v}" for k, v in s["client"].items() if shown(k, v))]
    return lines + [f"- failed window: {f}" for f in s["failures"]]


def render(summary: dict[str, Any], described: dict[str, dict[str, Any]], meta: dict[str, Any]) -> str:
    sides, sla = summary["sides"], summary["sla"]
    rates = [s["operating_rate"] for s in sides.values() if s["operating_rate"] == s["operating_rate"]]
    windows = max(s["windows"] for s in sides.values())
    defaults_info = next((described[n] for n in ("naive", "defaults") if n in described), None)
    noise = summary.get("noise")
    text = [
        "# What tuning buys over `vllm serve` defaults",
        "",
        f"{meta['created']}, space `{meta['space']}` (workload `{meta['workload']}`), hardware "
        f"{summary['hardware']['name']} (${summary['hardware']['usd_per_hour']:g}/h), engine {meta['engine_version']}."
        f" SLA: {sla['attainment']:.0%} of tasks within {num(sla['task_ms'], 6)} ms"
        + (f", TTFT <= {num(sla['ttft_ms'], 6)} ms" if sla.get("ttft_ms") else "")
        + (f", TPOT <= {num(sla['tpot_ms'], 6)} ms" if sla.get("tpot_ms") else "")
        + f". {windows} window(s) per side, each on a freshly launched engine, in turn (ABCABC); the capacity "
        f"protocol and {meta['eval_items']} fixed evaluation items per window. Runs (each window's engine-argv.json, "
        f"levels, item scores): `{meta['out_dir']}`.",
        "",
        *side_table(summary, rates[0] if rates else math.nan),
        "",
        *pair_table(summary),
        "",
        "Capacity ratios are of geometric means over windows; their interval is a t interval on log capacity with "
        "the launch-to-launch noise pooled over every side"
        + (f" (sd {noise['sd_log']:.3f} in log, {noise['df']} df)" if noise else " (none here: no side had two "
                                                                                  "measured windows)")
        + ", floored at the capacity search's resolution.",
        "",
        f"- **{summary['verdict']}**",
        "",
    ]
    if defaults_info is not None:
        env_note = "; ".join(f"`{k}`: {why}" for k, why in sorted(defaults_info["env_origin"].items()))
        extra = (f" The space's `engine.extra_args` are appended to every side: "
                 f"`{' '.join(defaults_info['extra_args'])}`." if defaults_info["extra_args"] else "")
        text += ["## vLLM defaults", "", "defaults = the minimum that starts: `--model` (and `--served-model-name`, "
                 f"`--host`, `--port`, which the tool always gives), no other flag.{extra} Environment: {env_note}.",
                 ""]
    for name, s in sides.items():
        text += [f"## {TITLES.get(name, name)}", "", f"From {s['source']}.", "", *_side_lines(s, described[name]), ""]
    return "\n".join(text)
