"""What a user sees of a study in MLflow's UI: the parent run's description, links into the UI's views, and the
capacity search's levels as metric history (MLflow's charts draw each trial's latency-load curve from it)."""

from __future__ import annotations

import json
import math
import urllib.parse
from typing import Any

# the columns of the description's front table besides the objectives (when the rows carry them)
NOTE_EXTRAS = ("quality", "validity_rate")
# a level row's fields logged as history: MLflow metric name -> capacity_levels.json key
LEVEL_METRICS = {"level.rate": "rate", "level.tasks_per_s": "tasks_per_s", "level.attainment": "attainment",
                 "level.p95_task_ms": "p95_task_ms"}
NOTE_LIMIT = 8000  # MLflow truncates a run tag beyond this (MAX_TAG_VAL_LENGTH): the note must fit whole


# the runs table lists a filtered search flat only when sorted by something other than start time (else it fetches
# the matched runs' parents, nests the trials under them and collapses them): checked in a browser on MLflow 3.17
TRIALS_QUERY = {"searchFilter": "tags.`autotune.role` = 'trial'", "orderByKey": "tags.`mlflow.runName`",
                "orderByAsc": "true"}


def runs_table_url(experiment_id: str) -> str:
    """The study's runs table listing its trial runs flat, in trial order (the study's own run left out)."""
    return f"#/experiments/{experiment_id}/runs?" + urllib.parse.urlencode(TRIALS_QUERY, quote_via=urllib.parse.quote)


def run_url(experiment_id: str, run_id: str) -> str:
    return f"#/experiments/{experiment_id}/runs/{run_id}"


def compare_url(experiment_id: str, run_ids: list[str]) -> str:
    """MLflow's compare view on these runs (the route its UI bundle builds: JSON lists in the query)."""
    query = urllib.parse.urlencode({"runs": json.dumps(sorted(run_ids)), "experiments": json.dumps([experiment_id])},
                                   quote_via=urllib.parse.quote)
    return f"#/compare-runs?{query}"


def _num(v: Any) -> str:
    if isinstance(v, bool) or v is None:
        return "—" if v is None else str(v).lower()
    if isinstance(v, float):
        return "—" if not math.isfinite(v) else f"{v:.4g}"
    return str(v)


def interval(row: dict[str, Any], metric: str) -> tuple[float, float] | None:
    """The metric's interval as a trial or config stores it (`<m>_low/_high`, else `<m>_ci_low/_ci_high`), or
    None when neither pair is finite."""
    for low, high in ((f"{metric}_low", f"{metric}_high"), (f"{metric}_ci_low", f"{metric}_ci_high")):
        lo, hi = row.get(low), row.get(high)
        if isinstance(lo, int | float) and isinstance(hi, int | float) and math.isfinite(lo) and math.isfinite(hi):
            return float(lo), float(hi)
    return None


def _cell(row: dict[str, Any], metric: str) -> str:
    """A value with its interval when the row has one."""
    bounds = interval(row, metric)
    return f"{_num(row.get(metric))} [{_num(bounds[0])}, {_num(bounds[1])}]" if bounds else _num(row.get(metric))


def front_table_md(front: list[dict[str, Any]], objectives: list[tuple[str, str]], knobs: list[str]) -> str:
    if not front:
        return "No feasible trial yet.\n"
    metrics = [m for m, _ in objectives] + [m for m in NOTE_EXTRAS if m not in dict(objectives)
                                           and any(r.get(m) is not None for r in front)]
    # only the knobs the members differ in: the table stays readable in the UI (the shared ones follow it)
    varying = [k for k in knobs if len({str(r.get(k)) for r in front}) > 1]
    cols = ["trial", "windows", *metrics, "class", *varying]
    head = [f"{m} ({'↓' if d == 'minimize' else '↑'})" for m, d in objectives]
    lines = ["| " + " | ".join(["trial", "windows", *head, *cols[2 + len(objectives):]]) + " |",
             "|" + "---|" * len(cols)]
    for r in front:
        cells = [_cell(r, c) if c in metrics else _num(r.get(c)) for c in cols]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    shared = [f"{k} = {_num(front[0].get(k))}" for k in knobs if k not in varying and k in front[0]]
    return "\n".join(lines) + "\n" + (f"\nShared by every member: {', '.join(shared)}.\n" if shared else "")


def study_note(front: list[dict[str, Any]], context: dict[str, Any], knobs: list[str]) -> str:
    """The parent run's description (`mlflow.note.content`, markdown): the current front with its intervals, the
    study's SLA, objectives and constraints, and the command that reproduces it. A front too long for MLflow's
    tag limit shows its first members and says how many more are in `pareto_front.md`."""
    shown = len(front)
    while True:
        note = _note(front, shown, context, knobs)
        if len(note) <= NOTE_LIMIT or shown == 0:
            return note[:NOTE_LIMIT]
        shown = min(shown - 1, shown * NOTE_LIMIT // len(note))


def _note(front: list[dict[str, Any]], shown: int, context: dict[str, Any], knobs: list[str]) -> str:
    objectives = context.get("objectives", [])
    sla = {k: v for k, v in (context.get("sla") or {}).items() if v is not None}
    more = [f"... and {len(front) - shown} more member(s): see the artifact `pareto_front.md`.", ""] \
        if shown < len(front) else []
    parts = [f"## Pareto front of study `{context.get('study', '')}` ({len(front)} member(s))", "",
             front_table_md(front[:shown], objectives, knobs) if shown or not front else "", *more,
             "Values are the config's estimate over its measurement windows; `[low, high]` is the interval from "
             "independent windows (quality: the paired evaluation set). `class`: front members not distinguishable "
             "from each other within noise share a class" + (
                 "; `?`: not testable yet (the window-to-window noise is unknown: `autotune search --confirm K` "
                 "re-measures the front)." if any(r.get("class") == "?" for r in front) else "."), "",
             "## SLA, objectives, constraints", "",
             "- SLA: " + (", ".join(f"{k} = {_num(v)}" for k, v in sla.items()) or "none"),
             "- objectives: " + ", ".join(f"{m} ({d})" for m, d in objectives),
             "- constraints: " + (", ".join(f"{c['metric']} {c['op']} {_num(c['value'])}"
                                            for c in context.get("constraints", [])) or "none")]
    if context.get("command"):
        parts += ["", "## Reproduce", "", "```", context["command"], "```"]
    return "\n".join(parts) + "\n"


def reproduce_command(options: dict[str, Any]) -> str:
    """`autotune search` with these options (None: left out); secrets in store URLs are scrubbed."""
    import shlex

    from autotune.secrets import MASK, scrub, url_password

    argv = ["autotune", "search"]
    for flag, value in options.items():
        if value is not None:
            text, password = str(value), url_password(str(value))
            argv += [flag, scrub(text.replace(f":{password}@", f":{MASK}@") if password else text)]
    return shlex.join(argv)


def level_history(levels: list[dict[str, Any]]) -> list[tuple[str, float, int]]:
    """(metric, value, step) for every measured level of a capacity search, step = the offered rate in milli-tasks
    per second: a chart over steps is the latency-load curve with a true rate axis (the search bisects, so levels
    are measured out of order and bunch near the capacity)."""
    out = []
    for row in levels:
        rate = row.get("rate")
        if not isinstance(rate, int | float) or not math.isfinite(rate):
            continue
        step = round(rate * 1000)
        for name, key in LEVEL_METRICS.items():
            v = row.get(key)
            if isinstance(v, bool):
                v = float(v)
            if isinstance(v, int | float) and math.isfinite(v):
                out.append((name, float(v), step))
    return out
