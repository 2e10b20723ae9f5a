"""`autotune nightly`: re-measure the recommended config, test it against its baseline, search on, re-export.

1. The incumbent is the latest exported bundle's trial (or the policy's pick when nothing was exported).
2. It is re-measured K times on one engine (optionally with `--force KNOB=VALUE`, e.g. to rehearse a bad
   rollout), and its per-task latencies and scores are compared with the baseline trial's by a one-sided
   Mann-Whitney U test. A regression needs both: p < alpha and a change beyond the tolerance.
3. N new trials resume the study (the sampler already knows every earlier trial: a warm start).
4. If the policy now picks a different trial, a new bundle version is exported.
Writes reports/nightly/<study>/<timestamp>.md and .json; the CLI exits non-zero on a significant regression.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from autotune.config.space import load_space
from autotune.config.workload import load_workload
from autotune.errors import ConfigError
from autotune.export import measured_tasks
from autotune.knobs import KNOBS, TrialConfig, check_value
from autotune.secrets import scrub, scrub_obj


@dataclass
class Comparison:
    metric: str
    baseline: float
    current: float
    change: float  # relative (latency) or absolute (quality)
    p_value: float
    regressed: bool

    def line(self) -> str:
        change = f"{self.change:+.3f}" if self.metric == "quality" else f"{self.change:+.1%}"  # absolute / relative
        return (f"{self.metric}: {self.baseline:.4g} -> {self.current:.4g} ({change}), one-sided "
                f"Mann-Whitney p={self.p_value:.2g} (confidence {1 - self.p_value:.2%})")


@dataclass
class NightlyResult:
    study: str
    incumbent_trial: int
    comparisons: list[Comparison]
    new_trials: int
    reexported: str | None
    report_md: Path
    report_json: Path
    forced: dict[str, Any] = field(default_factory=dict)

    @property
    def regressions(self) -> list[Comparison]:
        return [c for c in self.comparisons if c.regressed]


def compare(baseline: list[dict], current: list[dict], alpha: float, latency_tolerance: float,
            quality_tolerance: float) -> list[Comparison]:
    """Task latency (worse = higher) and task score (worse = lower) of two sets of measured tasks."""
    from scipy.stats import mannwhitneyu

    out = []
    b_lat = [t["latency_s"] * 1000.0 for t in baseline]
    c_lat = [t["latency_s"] * 1000.0 for t in current]
    if len(b_lat) >= 3 and len(c_lat) >= 3:
        p = float(mannwhitneyu(c_lat, b_lat, alternative="greater").pvalue)
        b95, c95 = float(np.percentile(b_lat, 95)), float(np.percentile(c_lat, 95))
        change = c95 / b95 - 1.0
        out.append(Comparison("p95_task_ms", b95, c95, change, p, p < alpha and change > latency_tolerance))
    b_q = [t.get("score", 0.0) for t in baseline]
    c_q = [t.get("score", 0.0) for t in current]
    if len(b_q) >= 3 and len(c_q) >= 3:
        p = float(mannwhitneyu(c_q, b_q, alternative="less").pvalue) if len(set(b_q + c_q)) > 1 else 1.0
        bq, cq = float(np.mean(b_q)), float(np.mean(c_q))
        out.append(Comparison("quality", bq, cq, cq - bq, p, p < alpha and bq - cq > quality_tolerance))
    return out


def parse_forced(items: list[str]) -> dict[str, Any]:
    """KNOB=VALUE strings -> typed values, checked against the knob registry."""
    out = {}
    for item in items:
        name, sep, raw = item.partition("=")
        if not sep or name not in KNOBS:
            raise ConfigError("--force", name or item, f"must be KNOB=VALUE with a known knob ({sorted(KNOBS)})",
                              item)
        typ = KNOBS[name].type
        try:
            value: Any = raw.lower() in ("1", "true", "yes") if typ is bool else typ(raw)
        except ValueError:
            raise ConfigError("--force", name, f"must be a {typ.__name__}", raw) from None
        rule = check_value(name, value)
        if rule:
            raise ConfigError("--force", name, rule, value)
        out[name] = value
    return out


def latest_bundle(exports: Path, study: str) -> dict[str, Any] | None:
    versions = sorted((p for p in (exports / study).glob("v*") if p.name[1:].isdigit()), key=lambda p: int(p.name[1:]))
    if not versions:
        return None
    path = versions[-1] / "bundle.json"
    try:
        bundle = json.loads(path.read_text())
        int(bundle["trial"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(str(path), "trial", f"is not a readable autotune bundle ({type(exc).__name__}: {exc}); "
                          "re-export or move it away", show_value=False) from None
    return bundle


def run_nightly(study_name: str, storage: str, exports: Path, reports: Path, policy: str, confirm: int,
                new_trials: int, forced: dict[str, Any], alpha: float = 0.05, latency_tolerance: float = 0.25,
                quality_tolerance: float = 0.05, reporter=None, storage_option: str = "--storage") -> NightlyResult:
    from autotune.engines.keeper import EngineKeeper
    from autotune.engines.process import EngineRegistry
    from autotune.engines.vllm import VLLMEngine
    from autotune.export import candidates, export_bundle, pick
    from autotune.stores import load_study, probe_dir
    from autotune.study import SearchOptions, run_search, trial_inputs
    from autotune.trial import run_trial

    study = load_study(study_name, storage, storage_option)
    for folder, option in ((reports / study_name, "--reports"), (exports, "--exports")):
        probe_dir(folder, option, str(folder))  # before minutes of measuring, not after
    attrs = study.user_attrs
    if "space_file" not in attrs:
        raise ConfigError(storage, study_name, "has no recorded space file; run `autotune search` on it first",
                          show_value=False)
    space = load_space(attrs["space_file"])
    wl_file = Path(attrs["workload_file"])
    workload = load_workload(wl_file)
    run_dir = Path(attrs["run_dir"])

    bundle = latest_bundle(exports, study_name)
    if bundle is not None:
        incumbent = bundle["trial"]
    else:
        try:
            incumbent = pick(candidates(study), space, policy)[0].number
        except ValueError as exc:
            raise ConfigError(study_name, "--policy", str(exc), policy) from None
    base_dir = run_dir / study_name / f"trial-{incumbent:04d}"
    baseline = measured_tasks(base_dir / "tasks.jsonl")
    config = TrialConfig.model_validate(json.loads((base_dir / "resolved-config.json").read_text()))
    if forced:
        server = {k: v for k, v in forced.items() if KNOBS[k].part == "server"}
        client = {k: v for k, v in forced.items() if KNOBS[k].part == "client"}
        config = TrialConfig(server=config.server.model_copy(update=server),
                             client=config.client.model_copy(update=client))

    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    night_dir = run_dir / study_name / f"nightly-{stamp}"
    inputs = trial_inputs(space, workload, wl_file)
    keeper = EngineKeeper(VLLMEngine(space.engine, EngineRegistry(run_dir / "engines")))
    current: list[dict] = []
    phase = (reporter.phase if reporter else (lambda s: None))
    try:
        for k in range(confirm):
            result = run_trial(config, inputs, keeper, night_dir / f"confirm-{k}", phase)
            current += measured_tasks(result.files["tasks.jsonl"])
    finally:
        keeper.close()
    comparisons = compare(baseline, current, alpha, latency_tolerance, quality_tolerance)

    done = sum(1 for t in study.trials if t.state.is_finished())
    if new_trials > 0:
        from autotune.progress import NullReporter

        run_search(SearchOptions(space_file=Path(attrs["space_file"]), workload_file=wl_file,
                                 n_trials=done + new_trials, study_name=study_name, storage=storage,
                                 run_dir=run_dir, mlflow_uri=attrs.get("mlflow_uri")), reporter or NullReporter())
    study = load_study(study_name, storage)
    reexported = None
    try:
        best = pick(candidates(study), space, policy)[0].number
    except ValueError:
        best = incumbent
    if best != incumbent or bundle is None:
        path, _, _ = export_bundle(study, policy, exports)
        reexported = str(path)
    return _write_report(NightlyResult(study_name, incumbent, comparisons, new_trials, reexported,
                                       Path(), Path(), forced), reports, stamp, confirm, len(baseline), len(current))


def _write_report(r: NightlyResult, reports: Path, stamp: str, confirm: int, n_base: int,
                  n_cur: int) -> NightlyResult:
    out = reports / r.study
    out.mkdir(parents=True, exist_ok=True)
    r.report_md, r.report_json = out / f"{stamp}.md", out / f"{stamp}.json"
    verdict = "REGRESSION" if r.regressions else "ok"
    data = {"study": r.study, "timestamp": stamp, "verdict": verdict, "incumbent_trial": r.incumbent_trial,
            "confirm_runs": confirm, "baseline_tasks": n_base, "current_tasks": n_cur, "forced": r.forced,
            "comparisons": [c.__dict__ for c in r.comparisons], "new_trials": r.new_trials,
            "reexported": r.reexported}
    r.report_json.write_text(json.dumps(scrub_obj(data), indent=2, default=str))
    lines = [f"# Nightly {r.study} {stamp}: {verdict}", "",
             f"Incumbent trial {r.incumbent_trial} re-measured {confirm}x ({n_cur} tasks vs {n_base} baseline tasks)"
             + (f" with forced {r.forced}" if r.forced else "") + ".", ""]
    lines += [f"- {'**REGRESSED** ' if c.regressed else ''}{c.line()}" for c in r.comparisons]
    lines += ["", f"{r.new_trials} new trials; " + (f"re-exported: `{r.reexported}`" if r.reexported
                                                   else "the recommendation stands.")]
    r.report_md.write_text(scrub("\n".join(lines) + "\n"))
    return r
