"""`autotune report`: markdown + PNG tables of what the application knobs did, from finished studies.

For every study it writes the table of the client knobs that varied: by output format x constraint (validity,
accuracy, tokens: the seeds' format table) and by architecture (latency, FM calls, quality, cost), plus the
trials that failed and why. Numbers come from the trials' stored metrics (the same ones MLflow shows).
"""

from __future__ import annotations

import datetime as dt
import json
import math
from pathlib import Path
from typing import Any

import optuna

from autotune import __version__
from autotune.secrets import scrub
from autotune.tracking import interval

FORMAT_COLS = [("validity_rate", "valid", "{:.0%}"), ("quality", "accuracy", "{:.3f}"),
               ("input_tokens_per_task", "tokens in/task", "{:.0f}"),
               ("output_tokens_per_task", "tokens out/task", "{:.1f}"), ("truncated_rate", "truncated", "{:.0%}"),
               ("p95_task_ms", "p95 task ms", "{:.0f}"), ("tasks_per_s", "tasks/s", "{:.2f}")]
ARCH_COLS = [("mean_task_ms", "mean task ms", "{:.0f}"), ("p95_task_ms", "p95 task ms", "{:.0f}"),
             ("fm_calls_per_task", "FM calls/task", "{:.2f}"), ("input_tokens_per_task", "tokens in/task", "{:.0f}"),
             ("output_tokens_per_task", "tokens out/task", "{:.0f}"), ("quality", "quality", "{:.3f}"),
             ("validity_rate", "valid", "{:.0%}"), ("tasks_per_s", "tasks/s", "{:.2f}"),
             ("usd_per_1k_tasks", "$/1k tasks", "{:.4f}")]
GROUPINGS = [(("output_format", "constrained"), FORMAT_COLS, "format"),
             (("architecture", "output_format"), ARCH_COLS, "architecture"),
             (("repair",), FORMAT_COLS, "repair"), (("semantic_cache", "cache_threshold"),
                                                     [*ARCH_COLS[:2], ("cache_hit_rate", "hit rate", "{:.0%}"),
                                                      ("cache_false_hit_rate", "false hits", "{:.0%}"),
                                                      ("quality", "quality", "{:.3f}")], "cache")]


NONE = "—"  # no value, no interval, no sample size
TABLE_NOTE = ("n tasks: tasks of the trial's measurement window (completed + failed; latency, tokens and validity "
              "come from the completed ones); n items: evaluation items graded (accuracy/quality is their mean). "
              "[95% CI]: the interval the trial's metrics carry (quality: bootstrap over items); " + NONE
              + " where the trial has none.")


def _fmt(pattern: str, v: Any) -> str:
    if v is None or isinstance(v, bool) or not isinstance(v, int | float) or math.isnan(v) or math.isinf(v):
        return NONE
    return pattern.format(v)


def _with_interval(m: dict[str, Any], metric: str, pattern: str) -> str:
    """`value [low, high]`, `value [—]` when there is no interval, `—` when there is no value."""
    value, b = _fmt(pattern, m.get(metric)), interval(m, metric)
    if value == NONE:
        return NONE
    return f"{value} [{_fmt(pattern, b[0])}, {_fmt(pattern, b[1])}]" if b else f"{value} [{NONE}]"


def _tasks(m: dict[str, Any]) -> tuple[int, int] | None:
    """(tasks, failed) of a window, from `tasks_ok` and `task_error_rate` (a rate); None when not recorded or when
    every task failed (the count is then unknown)."""
    ok, err = m.get("tasks_ok"), m.get("task_error_rate")
    if not isinstance(ok, int | float) or not math.isfinite(ok):
        return None
    err = err if isinstance(err, int | float) and math.isfinite(err) else 0.0
    if err >= 1:
        return None
    failed = round(ok * err / (1 - err)) if err > 0 else 0
    return round(ok) + failed, failed


def _n_tasks(windows: list[dict[str, Any]]) -> str:
    """Tasks over the windows, failed ones noted."""
    counts = [_tasks(m) for m in windows]
    if not counts or None in counts:
        return NONE
    total, failed = sum(c[0] for c in counts), sum(c[1] for c in counts)
    return f"{total}" + (f" ({failed} failed)" if failed else "")


def _table(keys: tuple[str, ...], cols, rows: list[dict[str, Any]]) -> str:
    """One row per trial: its knobs, the columns (with the interval where a metric can carry one), n and trial."""
    ci = {m for m, _, _ in cols if m == "quality" or any(interval(r["metrics"], m) for r in rows)}
    head = [*keys, *[c[1] + (" [95% CI]" if c[0] in ci else "") for c in cols], "n tasks", "n items", "trial"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        m = r["metrics"]
        cells = [str(r["params"].get(k, NONE)) for k in keys]
        cells += [_with_interval(m, c, pat) if c in ci else _fmt(pat, m.get(c)) for c, _, pat in cols]
        cells += [_n_tasks([m]), _fmt("{:.0f}", m.get("eval_items"))]
        lines.append("| " + " | ".join(cells + [str(r["trial"])]) + " |")
    return "\n".join(lines)


def _varied(rows: list[dict[str, Any]], key: str) -> bool:
    return len({json.dumps(r["params"].get(key)) for r in rows}) > 1


def study_section(study: optuna.Study, out_dir: Path) -> list[str]:
    """Front table, 2-D projections, 3-D HTML, parallel coordinates, hypervolume over trials, failures."""
    from collections import Counter

    from autotune.config import load_space
    from autotune.search import front_rows
    from autotune.tracking import (
        HV_REFERENCE,
        hypervolume_curve,
        hypervolume_png,
        level_points,
        levels_png,
        parallel_html,
        pareto_html,
        pareto_png,
    )

    name = study.study_name
    if "space_file" not in study.user_attrs:
        return [f"(study `{name}` predates recorded space files: search figures skipped)", ""]
    space = load_space(study.user_attrs["space_file"], check_paths=False)
    objectives = [(o.metric, o.direction) for o in space.objectives]
    rows, front = front_rows(study, space, judge=True)
    knobs = [k for k, spec in space.knobs.items() if spec.value is None]
    md = ["### Search", ""]
    if rows:
        import matplotlib.pyplot as plt

        fig = pareto_png(rows, objectives)
        fig.savefig(out_dir / f"{name}-pareto.png", dpi=110)
        plt.close(fig)
        pareto_html(rows, objectives, knobs).write_html(out_dir / f"{name}-pareto-3d.html", include_plotlyjs="cdn")
        parallel_html(rows, knobs, objectives).write_html(out_dir / f"{name}-parallel.html", include_plotlyjs="cdn")
        curve = hypervolume_curve(rows, objectives)
        fig = hypervolume_png(curve)
        fig.savefig(out_dir / f"{name}-hypervolume.png", dpi=110)
        plt.close(fig)
        md += front_markdown(study, space, rows, front, knobs)
        points = level_points(study.trials)
        if points:
            fig = levels_png(points, space.sla.task_ms)
            fig.savefig(out_dir / f"{name}-levels.png", dpi=110)
            plt.close(fig)
            md += ["", f"Capacity at SLA: every load level of every trial ({len(points)} levels), tasks/s per "
                   "replica against p95 task latency, with the frontier.", "", f"![levels]({name}-levels.png)"]
        md += ["", f"![projections]({name}-pareto.png)", "",
               f"Interactive: [3-D front]({name}-pareto-3d.html), [parallel coordinates]({name}-parallel.html).",
               "", f"![hypervolume]({name}-hypervolume.png)", "",
               "Hypervolume (scaled objectives) after each trial: " + ", ".join(f"{t}: {h:.3f}" for t, h in curve)
               + f" ({HV_REFERENCE}; the axis starts at 0).", ""]
    failed = [t for t in study.trials if t.state == optuna.trial.TrialState.FAIL]
    fails = Counter(t.user_attrs.get("fail_reason", "?") for t in failed if t.user_attrs.get("duplicate_of") is None)
    known = sum(1 for t in failed if t.user_attrs.get("duplicate_of") is not None)
    if fails or known:
        md += ["Failures by reason: " + ", ".join(f"{k} {v}" for k, v in fails.most_common())
               + (f" ({known} re-proposals of a failed config or server part, told without a run)" if known else ""),
               ""]
    return md


def _cell(r: dict[str, Any], metric: str) -> str:
    from autotune.progress import bracket_note

    return _with_interval(r, metric, "{:.4g}") + (bracket_note(r) if metric == "capacity_tps" else "")


def front_markdown(study, space, rows: list[dict[str, Any]], front: list[dict[str, Any]],
                   knobs: list[str]) -> list[str]:
    """The front, one row per config with 95% intervals and its "equivalent within noise" class, the tested
    differences between its members, and how much of it survived confirmation."""
    from autotune.search import (
        ALPHA,
        judge_front,
        resolution,
        screening_summary,
        study_noise,
        study_points,
        study_workload,
        survival_summary,
    )

    objectives = [o.metric for o in space.objectives]
    cols = objectives + [c for c in ("capacity_tps", "usd_per_1k_tasks", "p95_task_ms_at_load", "quality")
                         if c not in objectives and any(r.get(c) is not None for r in front)]
    points = study_points(study, space)
    by_key = {cp.key: cp for cp in points}
    md = [f"Pareto front ({len(front)} of {len(rows)} feasible configs; one row per config, its windows merged; "
          f"values with 95% intervals, {NONE} where there is none yet; n tasks: tasks over the windows the estimate "
          "uses, n items: evaluation items graded):", "",
          "| trials | " + " | ".join(knobs + cols) + " | windows | n tasks | n items | class |",
          "|" + "---|" * (5 + len(knobs) + len(cols))]
    for r in sorted(front, key=lambda r: (r.get("class") or "~", r["trial"])):
        windows = f"{r['windows']}" + (" confirmed" if r.get("confirmed") else "") + (
            f", {r['failed_windows']} failed" if r.get("failed_windows") else "")
        cp = by_key.get(r.get("config_key"))
        n_tasks = _n_tasks([w.get("metrics", {}) for w in cp.windows()]) if cp else NONE
        n_items = str(len(cp.items())) if cp and cp.items() else _fmt("{:.0f}", cp.metrics().get("eval_items")) \
            if cp else NONE
        md.append(f"| {', '.join(map(str, r['trials']))} | " + " | ".join(str(r.get(k, NONE)) for k in knobs) + " | "
                  + " | ".join(_cell(r, c) for c in cols) + f" | {windows} | {n_tasks} | {n_items} | "
                  f"{r.get('class') or NONE} |")
    res = resolution(space, study_workload(study))
    keys = {r["config_key"] for r in front}
    verdict = judge_front([cp for cp in points if cp.key in keys], space, study_noise(study, points, space, res), res)
    trial_of = {cp.key: cp.number for cp in points}
    md.append("")
    if verdict.untested:
        md += [f"No interval or class for {', '.join(verdict.untested)}: no config was measured twice, so the "
               "window-to-window noise is unknown. `autotune search --confirm K` re-measures the front.", ""]
    else:
        md += ["Members sharing a class letter are **equivalent within noise**: no objective tells them apart at a "
               f"family-wise error rate of {ALPHA:g} (Holm over "
               f"{sum(d.test != 'untested' for d in verdict.differences)} tests: every pair of "
               "members x every objective). Latency, capacity and cost are compared on window means with the "
               "window-to-window noise pooled over repeated configs; quality is paired by evaluation item.", ""]
    tested = [d for d in verdict.differences if d.test != "untested"]
    if tested:
        md += ["| a | b | objective | b vs a [95% CI] | test | Holm p | tells apart |", "|---|---|---|---|---|---|---|"]
        for d in tested:
            change = f"x{d.ratio:.3g} [{d.low:.3g}, {d.high:.3g}]" if d.ratio == d.ratio else \
                f"{d.delta:+.3g} [{d.low:+.3g}, {d.high:+.3g}]"
            md.append(f"| {trial_of.get(d.a)} | {trial_of.get(d.b)} | {d.metric} | {change} | {d.test} | "
                      f"{d.p_holm:.3g} | {'yes' if d.distinct else 'no'} |")
        md.append("")
    screen = screening_summary(study, space)
    if screen is not None:
        lost = screen["would_reach_front"]
        md += [f"Screening: {screen['screened_out']} config(s) screened out after a short window, skipping about "
               f"{screen['saved_s']:.0f} s of full trials. " + (
                   f"Audited at full fidelity (`--confirm`): {screen['audited']}; {len(lost)} would have reached the "
                   f"front ({', '.join(map(str, lost)) or 'none'})." if screen["audited"] else
                   "Not audited: `--confirm` measures screened-out configs once at full fidelity to show what "
                   "screening lost."), ""]
    surv = survival_summary(study, space)
    if surv is not None:
        name = lambda keys: ", ".join(str(surv["trials"].get(k, k)) for k in keys) or "none"  # noqa: E731
        md += [f"Confirmation: **{len(surv['kept'])} of {len(surv['kept']) + len(surv['dropped'])}** front members "
               f"survived (the front recomputed on their confirmation windows alone): kept {name(surv['kept'])}; "
               f"dropped {name(surv['dropped'])}; {surv['failed_windows']} confirmation window(s) failed.", ""]
    return md


def write_report(studies: list[str], storage: str, out_dir: Path, storage_option: str = "--storage") -> Path:
    from autotune.stores import load_study

    # a missing study fails before any file is written
    loaded = {name: load_study(name, storage, storage_option) for name in studies}
    out_dir.mkdir(parents=True, exist_ok=True)
    md = [f"# autotune report: {', '.join(studies)}", "",
          f"Generated {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC by autotune {__version__} from `{scrub(storage)}`. "
          "Each row is one measured trial (one measurement window on the real engine); accuracy is the mean task "
          "score, valid the share of FM replies that parsed strictly in the format (a labelled field: exactly one of "
          "its labels). " + TABLE_NOTE, ""]
    for name, study in loaded.items():
        trials = study.trials
        done = [{"trial": t.number, "params": t.params, "metrics": t.user_attrs.get("metrics", {})}
                for t in trials if t.state == optuna.trial.TrialState.COMPLETE and t.user_attrs.get("duplicate_of")
                is None]  # measured trials only: a re-proposal of a measured config was told, not measured
        screened = [t for t in trials if t.state == optuna.trial.TrialState.PRUNED]
        repeats = sum(1 for t in trials if t.user_attrs.get("duplicate_of") is not None)
        failed = [t for t in trials if t.state == optuna.trial.TrialState.FAIL]
        engine = next((t.user_attrs.get("engine_version") for t in trials if t.user_attrs.get("engine_version")), "?")
        md += [f"## Study `{name}`", "", f"{len(done)} complete, {len(screened)} screened out and {len(failed)} "
               f"failed trials ({repeats} re-proposals of measured configs were not measured again); engine "
               f"vLLM {engine}.", ""]
        md += study_section(study, out_dir)
        for keys, cols, label in GROUPINGS:
            if not done or not _varied(done, keys[0]):
                continue
            rows = sorted(done, key=lambda r: [str(r["params"].get(k)) for k in keys])
            png = out_dir / f"{name}-{label}.png"
            _plot(rows, keys, cols, png, f"{name}: by {label}")
            md += [f"### By {label}", "", _table(keys, cols, rows), "", f"![{name} by {label}]({png.name})", ""]
        if failed:
            md += ["### Failed trials", "", "| trial | params | reason | message |", "|---|---|---|---|"]
            for t in failed:
                md.append(f"| {t.number} | {_params(t.params)} | {t.user_attrs.get('fail_reason', '?')} | "
                          f"{str(t.user_attrs.get('fail_message', ''))[:160].replace('|', '/')} |")
            md.append("")
    path = out_dir / "README.md"
    path.write_text(scrub("\n".join(md) + "\n"))
    return path


def _params(p: dict[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in p.items())


def _plot(rows: list[dict[str, Any]], keys: tuple[str, ...], cols, path: Path, title: str) -> None:
    """One bar panel per metric (validity/quality/tokens/latency), one bar per knob combination."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    wanted = [c for c in cols if c[0] in ("validity_rate", "quality", "output_tokens_per_task", "p95_task_ms",
                                          "fm_calls_per_task", "cache_hit_rate")]
    labels = ["/".join(str(r["params"].get(k, "-")) for k in keys) for r in rows]
    fig, axes = plt.subplots(1, len(wanted), figsize=(4.2 * len(wanted), 4.2), squeeze=False)
    for ax, (metric, name, _) in zip(axes[0], wanted, strict=True):
        values = [r["metrics"].get(metric, math.nan) for r in rows]
        ax.bar(range(len(rows)), values, color="#4C72B0")
        ax.set_xticks(range(len(rows)), labels, rotation=60, ha="right", fontsize=8)
        ax.set_title(name)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
