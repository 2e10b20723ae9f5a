"""One trial: get an engine for the server part (reused when equal), run the application load, score, measure."""

from __future__ import annotations

import functools
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autotune.config import Scorer, SpaceConfig, TrialConfig, WorkloadConfig, safe_score
from autotune.engines import (
    EngineKeeper,
    api_cost,
    classify_failure,
    endpoint_key,
    engine_fatal,
    histogram_delta,
    parse_metrics,
    reset_prefix_cache,
    window_deltas,
)
from autotune.errors import EngineLaunchError, TrialRejected, WindowEmpty
from autotune.fmware import AppConfig
from autotune.loadgen import LoadConfig, LoadResult, StandbyPool, app_config, build_load_config, run_load
from autotune.measure import (
    CapacityPrior,
    ItemScores,
    breakdown_markdown,
    completion_config,
    node_breakdown,
    run_levels,
    summarize,
    summarize_tasks,
    usd_per_1k,
)
from autotune.search.config_points import config_key
from autotune.search.routes import check_routes, route_keys, routes_for, self_hosted, start_endpoints
from autotune.secrets import expand, redact_argv
from autotune.sla import limits_of

Phase = Callable[[str], None]


@dataclass
class TrialInputs:
    """What every trial of a search shares: configs, rendered tasks, references, few-shot examples, scorer."""

    space: SpaceConfig
    workload: WorkloadConfig
    tasks: list[dict[str, Any]]
    references: dict[str, dict[str, Any]]
    examples: list[dict[str, Any]]
    scorer: Scorer
    eval_ids: list[str] = field(default_factory=list)  # the study's fixed evaluation set (task ids)
    complete_eval: bool = True  # False for a screening window: its quality is read off what the window reached
    # configs the study measured (autotune.measure.levels.first_estimate): where this trial's levels start
    capacity_priors: list[CapacityPrior] = field(default_factory=list)
    checked_endpoints: set[str] = field(default_factory=set)  # routed endpoints that answered (autotune.search.routes)


@dataclass
class TrialResult:
    metrics: dict[str, float]
    engine_version: str
    argv: list[str]
    files: dict[str, Path] = field(default_factory=dict)  # artifact name -> path
    tables: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # MLflow tables (artifact name -> rows)
    dominant_node: str = ""
    tags: dict[str, str] = field(default_factory=dict)  # extra MLflow tags (the capacity search's stop reason)
    item_scores: dict[str, float] = field(default_factory=dict)  # evaluation item id -> score (failures 0)


def score_tasks(tasks: list[dict[str, Any]], references: dict[str, dict[str, Any]], scorer: Scorer) -> None:
    """Attach the task score to every completed task (in place)."""
    for t in tasks:
        if t.get("ok") and t["id"] in references:
            t["score"] = safe_score(scorer, t.get("answer") or {}, references[t["id"]])


def check_calls(load: LoadResult, engine_log: Path | None = None) -> None:
    """Every FM call of the window refused: the config is unsupported (or the server broken), not slow. An engine
    that died on its first requests (a kernel refusing the config's dtype on this CPU) is a refusal of the server
    part by the engine, remembered like a launch failure, so the search never launches that part again."""
    measured = [r for r in load.records if r.get("phase") == "measure"]
    if measured and not any(r.get("ok") for r in measured):
        first = next((r["error"] for r in measured if r.get("error")), "unknown error")
        if str(first).startswith(("HTTP 400", "HTTP 422")):
            raise TrialRejected(f"every FM call failed; first error: {first}"[:600], "unsupported")
        if engine_log is not None and (cause := engine_fatal(engine_log)):
            raise EngineLaunchError(f"the engine died on its first requests: {cause}"[:600], classify_failure(cause))
        raise TrialRejected(f"every FM call failed; first error: {first}"[:600], "requests_failed")


def check_requests(load: LoadResult, engine_log: Path | None = None) -> None:
    """A trial whose window measured nothing is a failed trial with a reason, never a COMPLETE one holding
    placeholder values: every FM call of the window refused, or no task completed in it. (A window of cache
    hits sends no FM call at all and is a real measurement.)"""
    check_calls(load, engine_log)
    measured = [r for r in load.records if r.get("phase") == "measure"]
    tasks = [t for t in load.tasks if t.get("phase") == "measure"]
    if not any(t.get("ok") for t in tasks):
        raise WindowEmpty(f"no task completed in the measurement window ({len(tasks)} started in it, "
                          f"{len(measured)} FM calls sent in it, {load.summary.get('abandoned_in_flight', 0)} "
                          "tasks abandoned in flight at the drain's end)")


def trial_metrics(load: LoadResult, inputs: TrialInputs, startup_s: float, reused: bool,
                  server: dict[str, float]) -> dict[str, float]:
    """Request-level and task-level metrics, quality, cost, server-side deltas and overheads."""
    space, workload = inputs.space, inputs.workload
    window = float(load.summary.get("measure_s") or workload.duration_s)
    limits = limits_of(space.sla)  # one SLA rule for requests, tasks and capacity (autotune/sla.py)
    m = summarize(load.records, window, limits)
    m.update(summarize_tasks(load.tasks, window, limits))
    m["usd_per_1k_requests"] = usd_per_1k(space.hardware.usd_per_hour, m["requests_per_s"])
    m.update(task_cost(space, m["tasks_per_s"], m, load.records))
    arrival = workload.arrival
    m["target_task_rate"] = arrival.rate if arrival.mode == "poisson" and arrival.rate else math.nan
    m["loadgen_cpu_s"] = float(load.summary.get("loadgen_cpu_s", math.nan))
    m["loadgen_cpu_share"] = float(load.summary.get("loadgen_cpu_share", math.nan))
    m.update(server)
    m.update(load.summary.get("gauges") or {})  # engine load polled through the window
    for key in ("loop_lag_p99_ms", "loop_lag_max_ms"):  # the load generator's event loop, if CPU work stalled it
        m[key] = float(load.summary.get(key) if load.summary.get(key) is not None else math.nan)
    m["startup_s"] = startup_s
    m["engine_reused"] = 1.0 if reused else 0.0
    m["measure_s"] = window
    return m


def api_key(inputs: TrialInputs) -> str | None:
    """The bearer token the application sends: the workload's `api_key`, else the endpoint's: an API's from the
    variable its spec names, a vLLM engine's VLLM_API_KEY."""
    engine = inputs.space.engine
    if engine.kind == "openai" and not inputs.workload.api_key:
        return endpoint_key(engine)
    raw = inputs.workload.api_key or engine.env.get("VLLM_API_KEY")
    try:
        return expand(raw) if raw else None
    except KeyError as exc:
        raise TrialRejected(f"api_key refers to ${{{exc.args[0]}}}, which is not set", "bad_config") from None


def load_keys(inputs: TrialInputs, routes: dict[str, Any]) -> dict[str, str]:
    """Every key the load generator needs: the engine's, and each routed endpoint's."""
    return {"AUTOTUNE_API_KEY": api_key(inputs) or "", **route_keys(inputs.space, routes)}


def run_trial(config: TrialConfig, inputs: TrialInputs, keeper: EngineKeeper, trial_dir: Path,
              phase: Phase) -> TrialResult:
    """Raises TrialError subclasses on failure. The engine is left running for the next trial (the keeper
    stops it when the server part changes) unless the load failed in a way that may have broken it."""
    trial_dir.mkdir(parents=True, exist_ok=True)
    (trial_dir / "resolved-config.json").write_text(json.dumps(config.model_dump(), indent=2))
    app = app_config(inputs.workload, config.client, inputs.examples)
    problem = AppConfig.from_dict(app).problem()
    if problem:
        raise TrialRejected(problem, "unsupported")
    # the self-hosted endpoints the routes need run first (launched once, kept); the APIs answer once per search
    live = start_endpoints(keeper, self_hosted(inputs.space, config.client), trial_dir)
    routes = routes_for(inputs.space, config.client, live)
    if config.client.constrained != "none" and (inputs.space.engine.kind == "openai" or any(
            r.get("api", True) for r in routes.values())):
        raise TrialRejected("structured outputs (`constrained`) are vLLM's: an API endpoint takes none", "unsupported")
    check_routes(inputs.space, routes, inputs.checked_endpoints, trial_dir)
    wl, key = inputs.workload, load_keys(inputs, routes)
    # a capacity trial's load generators import while the engine launches (one per level, one for the evaluation
    # pass), not at the start of each level
    standbys = StandbyPool(trial_dir / "loadgen", key, wl.capacity.max_levels + 1) \
        if wl.load_protocol == "capacity" and wl.processes <= 1 else None
    try:
        return _run_trial(config, inputs, keeper, trial_dir, phase, standbys, routes, [h.url for h in live.values()])
    finally:
        if standbys is not None:
            standbys.close()


def _run_trial(config: TrialConfig, inputs: TrialInputs, keeper: EngineKeeper, trial_dir: Path, phase: Phase,
               standbys: StandbyPool | None, routes: dict[str, Any], others: list[str]) -> TrialResult:
    files = {"resolved-config.json": trial_dir / "resolved-config.json"}
    phase("launching")
    handle, reused = keeper.acquire(config.server, trial_dir / "engine.log")
    files["engine.log"] = handle.log_path
    (trial_dir / "engine-argv.json").write_text(json.dumps(redact_argv(handle.argv), indent=2))
    files["engine-argv.json"] = trial_dir / "engine-argv.json"
    # the tasks list starts with the evaluation items: the load walks them first
    cfg = build_load_config(inputs.workload, config.client, inputs.tasks, inputs.examples, handle.served_model,
                            trial_dir / "load", eval_first=len(inputs.eval_ids),
                            server_metrics="gauges" in handle.capabilities, routes=routes)
    phase("warming")
    t0 = time.monotonic()
    try:
        if inputs.workload.load_protocol == "capacity":
            first_check = functools.partial(check_calls, engine_log=handle.log_path)
            run = run_levels(handle.url, cfg, inputs, trial_dir / "levels", phase, load_keys(inputs, routes),
                             first_check, standbys, inputs.capacity_priors, config.server.model_dump(mode="json"),
                             config_key(config), functools.partial(below_quality_floor, inputs=inputs),
                             handle.capabilities, others)
            held, over = level_loads(run.levels, run.capacity, inputs)
            graded, eval_s = grade(held, handle.url, cfg, inputs, trial_dir, phase, complete=run.capacity > 0,
                                   answered=over, standbys=standbys)
            return capacity_result(run, inputs, handle, reused, trial_dir, files, graded, eval_s)
        # a reused engine must not carry the last trial's prefixes (an API cannot be asked: False)
        cold = "reset_cache" in handle.capabilities and reset_prefix_cache(handle.url)
        for url in others:  # the routed self-hosted engines start cold too
            reset_prefix_cache(url)
        load = run_load(handle.url, cfg, trial_dir / "load", on_tick=lambda: _tick(phase, t0, inputs.workload),
                        api_key=load_keys(inputs, routes))
        load.summary["prefix_cache_reset"] = cold
        check_requests(load, handle.log_path)
        score_tasks(load.tasks, inputs.references, inputs.scorer)
        graded, eval_s = grade([(load, "window")], handle.url, cfg, inputs, trial_dir, phase)
    except (TrialRejected, WindowEmpty):  # the config's fault (every call refused, an empty window): the engine is fine
        raise
    except BaseException as exc:  # a hung or crashed engine must not serve the next trial; Ctrl-C stops it too
        # a frozen engine will not shut down cleanly: a short SIGTERM grace, then SIGKILL
        keeper.close(keeper.hung_grace_s if getattr(exc, "reason", None) == "engine_hung" else None)
        raise
    phase("scoring")
    before = parse_metrics(load.metrics_before) if load.metrics_before else {}
    after = parse_metrics(load.metrics_after) if load.metrics_after else {}
    server = window_deltas(before, after)
    metrics = trial_metrics(load, inputs, 0.0 if reused else handle.startup_s, reused, server)
    metrics.update(finish_grading(graded, inputs, eval_s, trial_dir, files))
    breakdown = node_breakdown(load.tasks)
    for row in breakdown:
        metrics[f"node.{row['node']}.mean_ms"] = row["mean_ms"]
        metrics[f"node.{row['node']}.p95_tail_share"] = row["p95_tail_share"]
    files.update(_write_outputs(trial_dir, load, before, after, server, breakdown))
    return TrialResult(metrics=metrics, engine_version=handle.version, argv=redact_argv(handle.argv), files=files,
                       tables={"node_breakdown.json": breakdown}, dominant_node=breakdown[0]["node"] if breakdown
                       else "", item_scores=dict(graded.scores))


def capacity_result(run, inputs: TrialInputs, handle, reused: bool, trial_dir: Path,
                    files: dict[str, Path], graded: ItemScores, eval_s: float) -> TrialResult:
    """A capacity trial's metrics: latency at the operating load (the first level), capacity at SLA and the cost
    at capacity, quality on the evaluation set; the levels as a table and a latency-load figure."""
    from autotune.tracking import latency_load_png

    first = run.levels[0].load
    before = parse_metrics(first.metrics_before) if first.metrics_before else {}
    after = parse_metrics(first.metrics_after) if first.metrics_after else {}
    server = window_deltas(before, after)
    metrics = trial_metrics(first, inputs, 0.0 if reused else handle.startup_s, reused, server)
    metrics["p95_task_ms_at_load"] = metrics["p95_task_ms"]
    metrics["p95_task_ms_at_load_os_low"] = metrics["p95_task_ms_os_low"]
    metrics["p95_task_ms_at_load_os_high"] = metrics["p95_task_ms_os_high"]
    metrics["operating_rate"] = run.levels[0].rate
    metrics["capacity_tps"] = run.capacity
    metrics.update(bracket_metrics(run.search, run.estimate))
    metrics.update(task_cost(inputs.space, run.capacity, metrics, first.records))
    metrics.update(finish_grading(graded, inputs, eval_s, trial_dir, files))
    metrics["capacity_levels"] = float(len(run.levels))
    metrics["capacity_search_s"] = sum(lv.wall_s for lv in run.levels)
    metrics["loadgen_standby_wait_s"] = run.standby_wait_s
    metrics["loadgen_standby_dropped"] = float(run.standby_dropped)
    metrics["measure_s"] = sum(lv.row["window_s"] for lv in run.levels if lv.row["window_s"] == lv.row["window_s"])
    breakdown = node_breakdown(first.tasks)
    files.update(_write_outputs(trial_dir, first, before, after, server, breakdown))
    rows = run.rows()
    (trial_dir / "capacity_levels.json").write_text(json.dumps(rows, indent=2, default=str))  # the export copies it
    figure = trial_dir / "latency_load.png"
    latency_load_png(rows, inputs.space.sla.task_ms, run.capacity, figure)
    files["latency_load.png"] = figure
    return TrialResult(metrics=metrics, engine_version=handle.version, argv=redact_argv(handle.argv), files=files,
                       tables={"node_breakdown.json": breakdown, "capacity_levels.json": rows},
                       dominant_node=breakdown[0]["node"] if breakdown else "",
                       tags={"autotune.capacity_stop": run.search.stop_reason}, item_scores=dict(graded.scores))


def task_cost(space: SpaceConfig, rate: float, m: dict[str, float],
              records: list[dict[str, Any]] = ()) -> dict[str, float]:
    """$ per 1k tasks and its two parts: self-hosted hours spread over the task rate one replica carries (0 when
    every call went elsewhere), and API spend per completed task: every answered call of the window at the prices
    of the endpoint it went to (the space's engine when it is an API, or the endpoint its role was routed to:
    the records' `endpoint`). Without records, an API engine's tokens per task at its prices."""
    measured = [r for r in records if r.get("phase") == "measure" and r.get("ok")]
    prices = {**({"engine": space.engine} if space.engine.kind == "openai" else {}),
              **{n: e for n, e in space.endpoints.items() if e.kind == "openai"}}
    # the host's hours count when a call went to an engine on it (the trial's own or a self-hosted endpoint)
    on_host = ({"engine"} if space.engine.kind == "vllm" else set()) | \
        {n for n, e in space.endpoints.items() if e.kind == "vllm"}
    host_used = any(r.get("endpoint", "engine") in on_host for r in measured) if measured else bool(on_host)
    hosted = usd_per_1k(space.hardware.usd_per_hour, rate) if host_used else 0.0
    if measured:
        spend = sum(prices[e].usd_per_1m_input * (r.get("prompt_tokens") or 0)
                    + prices[e].usd_per_1m_output * (r.get("completion_tokens") or 0)
                    for r in measured if (e := r.get("endpoint", "engine")) in prices)
        done = m.get("tasks_ok") or 0.0  # spend with no completed task is no finite price per task
        api = 1000.0 * spend / 1e6 / done if done else (math.inf if spend > 0 else 0.0)
    elif space.engine.kind == "openai":
        api = api_cost(space.engine, m.get("input_tokens_per_task", math.nan),
                       m.get("output_tokens_per_task", math.nan))
    else:
        api = 0.0
    return {"usd_per_1k_tasks": hosted + api, "usd_per_1k_tasks_hosted": hosted, "usd_per_1k_tasks_api": api}


def bracket_metrics(search, estimate: float) -> dict[str, float]:
    """The capacity bracket [low, high) and whether it is as narrow as the workload asked (`capacity_resolved`;
    a wider one names why in the `autotune.capacity_stop` tag), with the first estimate the levels started from."""
    low, high = search.bracket
    return {"capacity_low": low, "capacity_high": high,
            "capacity_bracket": high / low if low > 0 else math.inf,
            "capacity_resolved": float(search.resolved), "capacity_estimate": estimate,
            "capacity_guess": search.guess if search.guess is not None else math.nan}


def level_loads(levels, capacity: float, inputs: TrialInputs) -> tuple[list[tuple[LoadResult, str]], ...]:
    """The levels' loads as the trial grades them, every task scored: (held, over). The operating load first; held
    are the loads the config holds (all of them when none did: capacity 0 is infeasible, never on the front, so
    its set is not completed and its missing items score 0); over the SLA, only answered attempts count."""
    for level in levels:  # every level's tasks are scored (its metrics); graded are the held ones
        score_tasks(level.load.tasks, inputs.references, inputs.scorer)
    held = [(lv.load, f"level-{i:02d}") for i, lv in enumerate(levels) if lv.verdict.passed or capacity <= 0]
    over = [(lv.load, f"level-{i:02d}") for i, lv in enumerate(levels) if not (lv.verdict.passed or capacity <= 0)]
    return held, over


def below_quality_floor(levels, search, inputs: TrialInputs) -> str | None:
    """`quality_floor` when the space's floor (`quality >= x`) is already broken: the set graded as the trial
    would grade it if its levels stopped now, with every item still ungraded counted at the best score (1), has a
    mean below the floor. Only once a level has held the SLA (before that, every level grades as held and a lower
    passing level would change the grading); then a later level could still replace an answered-over-SLA score
    with a held one, so the bound is near-certain, not strict. A full window only (a screening window grades on
    what it reached, and a screen decides nothing alone)."""
    floors = [c.value for c in inputs.space.constraints if c.metric == "quality" and c.op == ">="]
    if not floors or not inputs.complete_eval or not inputs.eval_ids or search.capacity <= 0:
        return None
    graded = take_loads(inputs.eval_ids, *level_loads(levels, search.capacity, inputs))
    best = (sum(graded.scores.values()) + len(graded.missing)) / len(graded.ids)
    return "quality_floor" if best < max(floors) else None


def grade(loads: list[tuple[LoadResult, str]], url: str, cfg: LoadConfig, inputs: TrialInputs, trial_dir: Path,
          phase: Phase, complete: bool = True, answered: list[tuple[LoadResult, str]] = (),
          standbys: StandbyPool | None = None) -> tuple[ItemScores, float]:
    """Each evaluation item's first attempt in the (scored) loads, in load order; then its first answered attempt
    in the loads over the SLA (`answered`); then the completion pass (unless `complete` is False).
    (the grades, seconds the completion pass took)"""
    graded = take_loads(inputs.eval_ids, loads, answered)
    return graded, complete_eval(url, cfg, inputs, graded, trial_dir / "eval", phase, standbys) if complete else 0.0


def take_loads(ids: list[str], loads: list[tuple[LoadResult, str]],
               answered: list[tuple[LoadResult, str]] = ()) -> ItemScores:
    """Each item's first attempt in `loads` (failures 0), then its first answered attempt in `answered`."""
    graded = ItemScores(ids)
    for load, source in loads:
        graded.take(load.tasks, source)
    for load, source in answered:
        graded.take(load.tasks, source, answered_only=True)
    return graded


def complete_eval(url: str, cfg: LoadConfig, inputs: TrialInputs, graded: ItemScores, out_dir: Path,
                  phase: Phase, standbys: StandbyPool | None = None) -> float:
    """Run the evaluation items the measured loads did not cover, each once, at a moderate closed-loop load
    (`eval_concurrency` users); their failures score 0. Seconds spent (0 when nothing was missing)."""
    missing = graded.missing
    if not missing or not inputs.complete_eval:
        return 0.0
    phase(f"evaluating {len(missing)} items")
    started = time.monotonic()
    wl = inputs.workload
    ecfg = completion_config(cfg, inputs.tasks, missing, wl.eval_concurrency, wl.request_timeout_s, out_dir)
    load = run_load(url, ecfg, out_dir, api_key=load_keys(inputs, cfg.routes), standbys=standbys)
    score_tasks(load.tasks, inputs.references, inputs.scorer)
    graded.take(load.tasks, "completion", phases=("measure",))
    return time.monotonic() - started


def finish_grading(graded: ItemScores, inputs: TrialInputs, eval_s: float, trial_dir: Path,
                   files: dict[str, Path]) -> dict[str, float]:
    """Quality metrics and `item_scores.jsonl`. A full window's set is complete: an item nothing reached scores 0
    (`eval_missing_items` says how many). A screening window is graded on what it reached."""
    missing = len(graded.missing)
    if inputs.complete_eval:
        graded.fill_missing()
    files["item_scores.jsonl"] = graded.write(trial_dir / "item_scores.jsonl")
    return {**quality_metrics(graded, eval_s), "eval_missing_items": float(missing)}


def quality_metrics(graded: ItemScores, eval_s: float) -> dict[str, float]:
    """`quality` is the mean score over the whole evaluation set, with a bootstrap interval over items."""
    from autotune.measure import quality_interval

    mean, low, high = quality_interval(graded.scores)
    return {"quality": mean, "quality_ci_low": low, "quality_ci_high": high, "eval_items": float(len(graded.ids)),
            "eval_failed_items": float(len(graded.failed)),
            "eval_completion_items": float(sum(1 for s in graded.sources.values() if s == "completion")),
            "eval_completion_s": eval_s}


def _write_outputs(trial_dir: Path, load: LoadResult, before, after, server, breakdown) -> dict[str, Path]:
    out = {
        "requests.jsonl": trial_dir / "requests.jsonl", "tasks.jsonl": trial_dir / "tasks.jsonl",
        "metrics-deltas.json": trial_dir / "metrics-deltas.json", "node_breakdown.md": trial_dir /
        "node_breakdown.md", "load-config.json": trial_dir / "load" / "load-config.json",
    }
    out["requests.jsonl"].write_text("".join(json.dumps(r) + "\n" for r in load.records))
    out["tasks.jsonl"].write_text("".join(json.dumps(t) + "\n" for t in load.tasks))
    out["metrics-deltas.json"].write_text(json.dumps({
        "window": server,
        "ttft_histogram": histogram_delta(before, after, "vllm:time_to_first_token_seconds"),
        "loadgen": load.summary,
    }, indent=2, default=str))
    sample = next((t for t in load.tasks if t.get("ok") and not t.get("cache_hit")), None)
    out["node_breakdown.md"].write_text(breakdown_markdown(breakdown, sample["spans"] if sample else None))
    return out


def _tick(phase: Phase, t0: float, workload: WorkloadConfig) -> None:
    elapsed = time.monotonic() - t0
    if elapsed < workload.warmup_s:
        phase("warming")
    elif elapsed < workload.warmup_s + workload.duration_s:
        phase("measuring")
    else:
        phase("draining")
