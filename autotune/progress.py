"""Rich display of a running search: trial i/N, the phase, last results and the best-so-far front."""

from __future__ import annotations

import math
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.measure import Measurement
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

HEADLINE = ("p95_task_ms", "quality", "validity_rate", "fm_calls_per_task", "output_tokens_per_task", "p95_ttft_ms",
            "output_tokens_per_s", "usd_per_1k_tasks", "startup_s")


def fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        if math.isnan(v):
            return "-"
        return f"{v:.4g}"
    return str(v)


NOT_KNOBS = {"trial", "pareto", "mlflow_run_id", "error_rate", "requests_per_s", "tasks_per_s", "task_error_rate",
             "capacity_tps", "p95_task_ms_at_load", "trials", "windows", "confirmed", "failed_windows", "config_key",
             "class", "noise_unknown", "quality_ci_low", "quality_ci_high", "confirm_failed", "capacity_low",
             "capacity_high", "capacity_bracket", "capacity_resolved", "capacity_stop", *HEADLINE}


def bracket_note(r: dict[str, Any]) -> str:
    """" (bracket x1.31, max_levels)" when a config's capacity bracket is wider than the workload asked (some
    window's search ran out of levels), else "": a capacity never claims a resolution it lacks."""
    resolved, width = r.get("capacity_resolved"), r.get("capacity_bracket")
    if not isinstance(resolved, int | float) or resolved >= 1:
        return ""
    why = ", ".join(x for x in (r.get("capacity_stop") or []) if x != "converged") or "unresolved"
    return f" (bracket x{width:.3g}, {why})" if isinstance(width, int | float) else f" ({why})"


def capacity_note(m: dict[str, Any]) -> str:
    """"capacity_tps=1.25 in [1.25, 1.38)  " for a capacity trial (with its stop reason when the bracket is wider
    than asked), else ""."""
    cap = m.get("capacity_tps")
    if not isinstance(cap, int | float) or cap != cap:
        return ""
    low, high = m.get("capacity_low", math.nan), m.get("capacity_high", math.nan)
    why = "" if m.get("capacity_resolved", 1.0) >= 1 else f" unresolved ({m.get('capacity_stop') or 'see report'})"
    return f"capacity_tps={fmt(cap)} in [{fmt(low)}, {fmt(high)}){why}  "


def with_interval(r: dict[str, Any], metric: str) -> str:
    """`value [low, high]` when the row carries an interval for the metric, else the value."""
    low, high = (r.get("quality_ci_low"), r.get("quality_ci_high")) if metric == "quality" else \
        (r.get(f"{metric}_low"), r.get(f"{metric}_high"))
    v = fmt(r.get(metric))
    note = bracket_note(r) if metric == "capacity_tps" else ""
    if isinstance(low, float) and isinstance(high, float) and low == low and high == high:
        return f"{v} [{fmt(low)}, {fmt(high)}]{note}"
    return v + note


def knob_names(rows: list[dict[str, Any]], objectives: list[str]) -> list[str]:
    """The config knobs the rows carry, in their order (everything that is not a metric or bookkeeping)."""
    names = dict.fromkeys(k for r in rows for k in r if k not in NOT_KNOBS and k not in objectives
                          and not k.endswith(("_low", "_high")))
    return list(names)


def front_table(rows: list[dict[str, Any]], objectives: list[tuple[str, str]], title: str) -> Table:
    """One row per config: its trials, the objectives (arrow: direction) with their 95% intervals, windows
    measured, the "equivalent within noise" class, context metrics, then one column per knob the members differ
    in (the knobs they share go under the title). Cells fold, never clip: a knob value is never cut."""
    names = [o for o, _ in objectives]
    capacity = ["capacity_tps", "usd_per_1k_tasks", "p95_task_ms_at_load"] if any(
        r.get("capacity_tps") is not None for r in rows) else []  # what a capacity search measured, always shown
    extra = [h for h in (*capacity, "quality", "validity_rate", "fm_calls_per_task", "p95_ttft_ms") if h not in names
             and (h in capacity or any(r.get(h) is not None for r in rows))]
    knobs = knob_names(rows, names)
    varying = [k for k in knobs if len({fmt(r.get(k)) for r in rows}) > 1]
    shared = [f"{k}={fmt(rows[0].get(k))}" for k in knobs if k not in varying]
    if shared and len(rows) > 1:
        title += f"\nshared by every member: {' '.join(shared)}"
    unknown = sorted({m for r in rows for m in (r.get("noise_unknown") or [])})
    if unknown:
        title += (f"\n(no interval or class for {', '.join(unknown)}: no config was measured twice; "
                  "`--confirm K` re-measures the front)")
    table = Table(title=title, show_lines=True, caption=None if unknown or len(rows) < 2 else
                  "class: members sharing a letter are equivalent within noise (no objective differs; Holm-tested "
                  "differences, family-wise error 0.05); intervals come from independent windows")
    table.add_column("trial", justify="right", overflow="fold")
    for name, direction in objectives:
        table.add_column(name + (" ↓" if direction == "minimize" else " ↑") + " [95% CI]", justify="right",
                         overflow="fold")
    table.add_column("windows", justify="right", overflow="fold")
    table.add_column("class", justify="center")
    for c in extra:
        table.add_column(c, justify="right", overflow="fold")
    for k in varying if len(rows) > 1 else knobs:
        table.add_column(k, overflow="fold")
    for r in sorted(rows, key=lambda r: (r.get("class") or "~", r["trial"])):
        trials = ",".join(str(t) for t in r.get("trials") or [r["trial"]])
        windows = f"{r.get('windows', 1)}" + (" confirmed" if r.get("confirmed") else "") + (
            f", {r['failed_windows']} failed" if r.get("failed_windows") else "")
        table.add_row(trials, *[with_interval(r, c) for c in names], windows, r.get("class") or "-",
                      *[with_interval(r, c) for c in extra],
                      *[fmt(r.get(k)) for k in (varying if len(rows) > 1 else knobs)])
    return table


def print_front(console: Console, rows: list[dict[str, Any]], objectives: list[tuple[str, str]], title: str) -> None:
    """The final front, after a blank line so its title never runs into what came before. Off a terminal (a CI
    log, `nohup`) nothing wraps a line: the table is printed as wide as it needs."""
    console.print()
    table = front_table(rows, objectives, title)
    if console.is_terminal:
        console.print(table)
        return
    saved = console.width  # print(width=) can only narrow: widen the console itself for this table
    console.width = max(saved, Measurement.get(console, console.options.update_width(10_000), table).maximum)
    try:
        console.print(table)
    finally:
        console.width = saved


class RichReporter:
    """On a terminal: a live progress bar with the best-so-far front under it. Off one (CI, `| tee`): no live
    display, whose frame would land in the log once more beside the final table; the per-trial lines only."""

    def __init__(self, console: Console | None = None):
        self.console = console or Console()
        self.progress = Progress(SpinnerColumn(), TextColumn("[bold]{task.description}"), BarColumn(),
                                 MofNCompleteColumn(), TextColumn("{task.fields[phase]}"), TimeElapsedColumn(),
                                 console=self.console)
        self.task = None
        self.front_view: Table | None = None
        # transient: the live frame goes when the search ends, and the final table is the only front left on screen
        self.live = Live(Group(self.progress), console=self.console, refresh_per_second=4, transient=True) \
            if self.console.is_terminal else None
        self.current = -1
        self.warned: set[str] = set()

    def __enter__(self) -> RichReporter:
        if self.live is not None:
            self.live.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self.live is not None:
            self.live.__exit__(*exc)
            if exc[0] is not None and self.front_view is not None:  # a crash or Ctrl-C: the final table never comes
                self.console.print(self.front_view)

    def _render(self) -> None:
        if self.live is None:
            return
        parts = [self.progress]
        if self.front_view is not None:
            parts.append(self.front_view)
        self.live.update(Group(*parts))

    def search_started(self, study: str, target: int, done: int) -> None:
        self.task = self.progress.add_task(f"study {study}", total=target, completed=done, phase="starting")
        if done:
            self.console.print(f"resuming study [bold]{study}[/]: {done}/{target} trials already finished")

    def trial_started(self, number: int, values: dict[str, Any]) -> None:
        self.current = number
        knobs = " ".join(f"{k}={v}" for k, v in values.items())
        self.console.print(f"[cyan]trial {number}[/] {knobs}")

    def phase(self, name: str) -> None:
        if self.task is not None:
            self.progress.update(self.task, phase=f"trial {self.current}: {name}")

    def trial_finished(self, number: int, metrics: dict[str, float] | None, error: str | None) -> None:
        if self.task is not None:
            self.progress.advance(self.task)
        if error:
            self.console.print(f"[red]trial {number} FAILED[/] {error.splitlines()[0][:200]}")
        else:
            line = "  ".join(f"{k}={with_interval(metrics, k)}" for k in HEADLINE)
            self.console.print(f"[green]trial {number} done[/] {capacity_note(metrics)}{line}", soft_wrap=True)

    def trial_skipped(self, number: int, why: str) -> None:
        self.console.print(f"[yellow]trial {number} not measured[/] {why}")

    def warn(self, key: str, text: str) -> None:
        """A warning printed once per search, however many trials meet it."""
        if key not in self.warned:
            self.warned.add(key)
            self.console.print(f"[yellow]warning:[/] {text}")

    def front(self, rows: list[dict[str, Any]], objectives: list[tuple[str, str]]) -> None:
        if self.live is None:
            return  # nothing redraws off a terminal: the caller prints the final front once (print_front)
        self.front_view = front_table(rows, objectives, "best-so-far Pareto front")
        self._render()


class NullReporter:
    """Reports nothing (nightly's search step, library use)."""

    def search_started(self, *a: Any) -> None: ...
    def trial_started(self, *a: Any) -> None: ...
    def phase(self, *a: Any) -> None: ...
    def trial_finished(self, *a: Any) -> None: ...
    def front(self, *a: Any) -> None: ...
