"""One trial's capacity search on its running engine: open-loop levels chosen by `CapacitySearch`, each judged
on SLA attainment with a Wilson interval. Every level is data (a row of `capacity_levels.json`)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from autotune.engines import reset_prefix_cache
from autotune.loadgen import LoadConfig, LoadResult, StandbyPool, run_load
from autotune.measure.capacity import CapacitySearch, LevelResult
from autotune.measure.evalset import ItemScores
from autotune.measure.request_metrics import busy_share, percentiles, tokens_in_window, tpot_s
from autotune.sla import Verdict, judge, limits_of, straddles, task_meets


@dataclass
class Level:
    rate: float
    load: LoadResult
    verdict: Verdict
    wall_s: float
    row: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class CapacityPrior:
    """A config the study measured: its capacity, the estimate its first level gave, its identity."""

    capacity: float
    estimate: float
    server: dict[str, Any]
    key: str = ""


def first_estimate(own: float, priors: list[CapacityPrior], server: dict[str, Any] | None,
                   key: str = "") -> float | None:
    """Where the levels after the first start: the nearest measured config's capacity scaled by the ratio of the
    two first-level estimates (the same config first, then the same server part, the latest of each); None
    without one (the rate doubles from the operating load).

    The own estimate is the operating load's task rate over the share of its window the engine was busy (Little's
    law for a server that does one task at a time). Alone it is no guess: batching makes the true capacity
    several times higher (the quickstart's first config: estimate 0.55, capacity 1.49-1.72 tasks/s, and
    galloping up from it cost two more levels than doubling). The scale factor carries a neighbour's measured
    batching gain over to this config's service demand (calls and tokens per task)."""
    usable = [p for p in priors if p.capacity > 0 and math.isfinite(p.estimate) and p.estimate > 0]
    nearest = next((p for p in reversed(usable) if key and p.key == key), None) \
        or next((p for p in reversed(usable) if p.server == server), None) \
        or (usable[-1] if usable else None)
    own_ok = math.isfinite(own) and own > 0
    return nearest.capacity * own / nearest.estimate if nearest is not None and own_ok else None


@dataclass
class CapacityRun:
    levels: list[Level]
    search: CapacitySearch
    standby_wait_s: float = 0.0  # waiting, before levels, for load generators still importing
    standby_dropped: int = 0  # standbys stopped for not importing in time (their levels started fresh processes)

    @property
    def estimate(self) -> float:
        """The operating-load level's own capacity estimate (see first_estimate)."""
        return self.levels[0].row.get("capacity_estimate", math.nan) if self.levels else math.nan

    @property
    def capacity(self) -> float:
        return self.search.capacity

    def rows(self) -> list[dict[str, Any]]:
        return [lv.row for lv in self.levels]


@dataclass
class _Context:
    """What every window of one trial's capacity search shares."""

    url: str
    base_cfg: LoadConfig
    inputs: Any
    out_dir: Path
    phase: Callable[[str], None]
    api_key: str | dict[str, str] | None
    standbys: StandbyPool | None
    drain: float
    covered: ItemScores
    waited: float = 0.0
    capabilities: frozenset[str] = frozenset({"reset_cache", "gauges"})
    others: list[str] = field(default_factory=list)


def run_levels(url: str, base_cfg: LoadConfig, inputs, out_dir: Path, phase: Callable[[str], None],
               api_key: str | dict[str, str] | None, first_level_check: Callable[[LoadResult], None],
               standbys: StandbyPool | None = None, priors: list[CapacityPrior] = (),
               server: dict[str, Any] | None = None, key: str = "",
               stop_early: Callable[[list[Level], CapacitySearch], str | None] | None = None,
               capabilities: frozenset[str] = frozenset({"reset_cache", "gauges"}),
               others: list[str] = ()) -> CapacityRun:
    """Bracket then narrow on task rate from a first estimate (`first_estimate` of the operating-load level and
    the study's `priors`); the engine keeps running across levels (and for the next trial). Each level runs on a
    standby load generator when `standbys` has one. A level whose verdict is a coin flip (misses, and an interval
    that still holds the target: autotune.sla.straddles) gets one continuation window at the same rate (a fresh
    arrival draw, `extend_s`), judged together with it; each window is a row, both carry the pooled verdict.
    `stop_early` (the levels so far, the search) may end the search after any level: the reason it returns is
    the search's stop reason (a config already certain to break a quality floor needs no capacity).
    `capabilities`: what the endpoint offers beyond the API (an API endpoint: neither a cache reset between
    levels nor gauges to wait on for an idle engine). `others`: the routed self-hosted engines' urls, whose prefix
    caches are reset before every level too."""
    cap, sla = inputs.workload.capacity, limits_of(inputs.space.sla)
    # a level's failing tasks are known misses one SLA period after they start: the drain need not be longer
    drain = min(inputs.workload.drain_timeout_s, sla["task_ms"] / 1000.0 * 1.5 + 2.0) if sla["task_ms"] \
        else inputs.workload.drain_timeout_s
    search = CapacitySearch(cap.start_rate, cap.tolerance, cap.max_levels, cap.max_rate, cap.min_rate)
    # evaluation items graded so far, by the rule the trial grades with (autotune.measure.evalset): the next
    # level walks the others first, so the levels together cover the set and the completion pass shrinks. The
    # price: a later level's task mix depends on what earlier levels reached (the same for configs whose levels
    # reached the same items, which a fixed arrival seed at the same rates makes the usual case); the first level,
    # the operating load every latency objective reads, always walks the set in the fixed order
    ctx = _Context(url, base_cfg, inputs, out_dir, phase, api_key, standbys, drain,
                   ItemScores(list(getattr(inputs, "eval_ids", []))), capabilities=capabilities, others=list(others))
    levels: list[Level] = []
    while (rate := search.next_rate()) is not None:
        if levels and (why := over_rate_limit(rate, levels[0].load, inputs.space)):
            levels.append(refused_level(rate, why, ctx.out_dir / f"level-{len(levels):02d}"))
            search.record(LevelResult(rate, False))  # the API would refuse these calls: a failed level, not run
            continue
        group = [_window(ctx, levels, rate, 0, (0, 0))]
        if not levels:
            first_level_check(group[0].load)  # every call refused at the operating load: unsupported, not overload
        verdict = group[0].verdict
        if cap.extend_s > 0 and straddles(verdict.met, verdict.judged - verdict.met, inputs.space.sla.attainment,
                                          cap.confidence):
            attempted = [t["id"] for t in group[0].load.tasks if t.get("phase") == "measure" and "id" in t]
            group.append(_window(ctx, levels + group, rate, 1, (verdict.met, verdict.judged - verdict.met),
                                 attempted))
            verdict = judge(sum(lv.verdict.met for lv in group), sum(lv.verdict.judged for lv in group),
                            inputs.space.sla.attainment, cap.confidence)
        for i, lv in enumerate(group):  # each window's own counts stay in its row; the level's verdict is pooled
            lv.row.update(segment=i, level_met=verdict.met, level_judged=verdict.judged, passed=verdict.passed,
                          resolved=verdict.resolved)
            lv.verdict = verdict
            ctx.covered.take(lv.load.tasks, "", answered_only=not verdict.passed)
        search.record(LevelResult(rate, verdict.passed, all(lv.row["valid"] for lv in group)))
        if not levels:
            search.guess = first_estimate(group[0].row["capacity_estimate"], list(priors), server, key)
            group[0].row["capacity_guess"] = search.guess if search.guess is not None else math.nan
        levels += group
        if stop_early is not None and (why := stop_early(levels, search)):
            search.stop_reason = why
            break
    return CapacityRun(levels, search, ctx.waited, standbys.dropped if standbys is not None else 0)


def over_rate_limit(rate: float, load: LoadResult, space) -> str | None:
    """Why an API's rate limits refuse `rate` tasks/s (None: within them, or no limit), from what the operating
    load sent each endpoint per task: its calls and tokens (records' `endpoint`; the space's own `engine` when
    it is an API, and every routed one). A level past a limit would measure the API's 429s."""
    limited = {name: api for name, api in [("engine", getattr(space, "engine", None)),
                                           *getattr(space, "endpoints", {}).items()]
               if getattr(api, "rpm", None) or getattr(api, "tpm", None)}
    tasks = [t for t in load.tasks if t.get("phase") == "measure"]
    if not limited or not tasks:
        return None
    for name, api in limited.items():
        sent = [r for r in load.records if r.get("phase") == "measure" and r.get("endpoint", "engine") == name]
        calls = len(sent) / len(tasks)
        tokens = sum((r.get("prompt_tokens") or 0) + (r.get("completion_tokens") or 0) for r in sent) / len(tasks)
        where = "" if name == "engine" else f" to {name}"
        if api.rpm and rate * calls * 60 > api.rpm:
            return f"rate_limit: {rate * calls * 60:.0f} calls/min{where} > rpm {api.rpm}"
        if api.tpm and rate * tokens * 60 > api.tpm:
            return f"rate_limit: {rate * tokens * 60:.0f} tokens/min{where} > tpm {api.tpm}"
    return None


def refused_level(rate: float, why: str, out_dir: Path) -> Level:
    """A level not run because the endpoint's limits refuse its load: a row saying so, failed, no tasks."""
    load = LoadResult(records=[], tasks=[], summary={"early_stop": why}, metrics_before="", metrics_after="",
                      out_dir=out_dir)
    verdict = Verdict(0, 0, math.nan, math.nan, math.nan, False, True)
    return Level(rate, load, verdict, 0.0, {"rate": rate, "passed": False, "resolved": True, "valid": True,
                                            "early_stop": why, "window_s": 0.0, "judged": 0, "met": 0,
                                            "attainment": math.nan, "p50_task_ms": math.nan,
                                            "p95_task_ms": math.nan, "tasks_per_s": 0.0, "segment": 0,
                                            "level_met": 0, "level_judged": 0})


def _window(ctx: _Context, levels: list[Level], rate: float, segment: int, prior: tuple[int, int],
            attempted: list[str] = ()) -> Level:
    """One load window at `rate` on an idle engine, judged on its own tasks (`prior`: the level's counts so far,
    which its early stop pools with its own; `attempted`: items its first window walked, walked last here)."""
    cap, space, sla = ctx.inputs.workload.capacity, ctx.inputs.space, limits_of(ctx.inputs.space.sla)
    # an overloaded level leaves a queue behind (the last trial's too, on a reused engine): every level starts
    # on an idle engine
    ctx.phase("settling")
    if ctx.standbys is not None and levels:  # replacements (a search longer than the pool) import meanwhile
        ctx.standbys.top_up()
    settle = wait_idle(ctx.url, timeout_s=ctx.drain + 30.0) if "gauges" in ctx.capabilities else 0.0
    if levels:
        levels[-1].row["settle_s"] = settle
    if ctx.standbys is not None:  # on a reused engine they are still importing: not while a level measures
        ctx.phase("load generators starting")
        ctx.waited += ctx.standbys.wait_ready()
    ctx.phase(f"level {len(levels) + 1}: {rate:.3g} tasks/s" + (" (continued)" if segment else ""))
    level_dir = ctx.out_dir / f"level-{len(levels):02d}"
    window = cap.window_s(rate) if not segment else max(cap.extend_s, cap.min_expected_tasks / rate)
    cfg = ctx.base_cfg.with_(
        arrival={"mode": "poisson", "rate": rate, "users": None}, warmup_s=cap.warmup_s, duration_s=window,
        drain_timeout_s=ctx.drain, out_dir=str(level_dir), eval_seen=sorted({*ctx.covered.scores, *attempted}),
        level={"target": space.sla.attainment, "confidence": cap.confidence, "min_tasks": cap.min_tasks, "sla": sla,
               "abandon_on_fail": bool(levels), "prior_met": prior[0], "prior_missed": prior[1],
               "segment": segment})
    started = time.monotonic()
    cold = "reset_cache" in ctx.capabilities and reset_prefix_cache(ctx.url)
    for url in ctx.others:
        reset_prefix_cache(url)
    load = run_load(ctx.url, cfg, level_dir, api_key=ctx.api_key, standbys=ctx.standbys)
    measured = [t for t in load.tasks if t.get("phase") == "measure"]
    verdict = judge(sum(task_meets(t, sla) for t in measured), len(measured), space.sla.attainment, cap.confidence)
    level = Level(rate, load, verdict, time.monotonic() - started)
    level.row = {**level_row(level, measured, cap.max_lag_ms), "prefix_cache_reset": cold}
    return level


def wait_idle(url: str, timeout_s: float) -> float:
    """Seconds until the engine reports nothing running or waiting (vLLM's gauges, summed over its processes);
    0 when it exposes neither gauge. Bounded: a level never waits longer than `timeout_s` for the last one."""
    import httpx

    from autotune.engines import gauges

    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        try:
            parsed = gauges(httpx.get(f"{url}/metrics", timeout=5.0).text)
        except (httpx.HTTPError, ValueError):
            break
        busy = [parsed.get(name) for name in ("vllm:num_requests_running", "vllm:num_requests_waiting")]
        if all(v is None for v in busy) or sum(v or 0.0 for v in busy) == 0:
            break
        time.sleep(0.25)
    return time.monotonic() - started


def level_row(level: Level, measured: list[dict[str, Any]], max_lag_ms: float) -> dict[str, Any]:
    """Everything one level measured: offered and achieved rate, attainment and its interval, latency, tokens,
    tokens/s per user (1 / median TPOT), the generator's lag, and whether the level is valid."""
    load, summary = level.load, level.load.summary
    window = float(summary.get("measure_s") or 0.0) or math.nan
    ok = [t for t in measured if t.get("ok")]
    lat = percentiles([t["latency_s"] * 1000.0 for t in ok], (50, 95, 99))
    lags = [t["lag_s"] * 1000.0 for t in measured if "lag_s" in t]
    lag_p95 = percentiles(lags, (95,))[95]
    calls = [r for r in load.records if r.get("phase") == "measure" and r.get("ok")]
    tpots = [x for r in calls if (x := tpot_s(r)) is not None]
    cpu_share = float(summary.get("loadgen_cpu_share", 0.0))
    busy = busy_share(load.records, summary.get("warmup_end", math.nan), summary.get("measure_end", math.nan))
    achieved = len(measured) / window
    valid = not (lag_p95 > max_lag_ms) and cpu_share <= 0.95  # NaN lag (no task) is not the generator's fault
    return {
        "rate": level.rate, "achieved_task_rate": achieved, "window_s": window,
        # the engine's busy share and the capacity it implies for a one-task-at-a-time server (first_estimate)
        "busy_share": busy, "capacity_estimate": achieved / busy if busy > 0 else math.nan,
        "early_stop": summary.get("early_stop"), **level.verdict.row(),
        "p50_task_ms": lat[50], "p95_task_ms": lat[95], "p99_task_ms": lat[99], "tasks_per_s": len(ok) / window,
        # tokens that streamed in during the window (an overloaded level's tasks finish after it)
        "output_tokens_per_s": tokens_in_window(load.records, summary.get("warmup_end", math.nan),
                                                summary.get("measure_end", math.nan)) / window,
        "tokens_per_s_per_user": 1.0 / float(np.median(tpots)) if tpots else math.nan,
        "abandoned_tasks": sum(1 for t in measured if t.get("abandoned")), "schedule_lag_p95_ms": lag_p95,
        "loadgen_cpu_share": cpu_share, "valid": valid, "wall_s": level.wall_s,
    }
