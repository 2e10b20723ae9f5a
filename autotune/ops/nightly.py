"""`autotune nightly`: test the recommended config against its baseline on fresh windows, search on, re-export.

1. The incumbent is the latest exported bundle's trial (or the policy's pick when nothing was exported). The
   baseline config is its recorded `resolved-config.json`; the current config is the baseline with `--force
   KNOB=VALUE` applied (e.g. to rehearse a bad rollout), identical to it when nothing is forced.
2. Both are measured in K windows each (`--confirm`), interleaved in ABBA order (baseline, current, current,
   baseline, ...), every window on a freshly launched engine, so launch-to-launch variance is in every window and
   drift or an order effect during the night hits both arms alike. The incumbent's own recorded window is not a
   baseline: it won a selection, so it is optimistic (the report shows it for reference only).
3. autotune.measure.regression tests the per-window gate metrics (p95 latency, capacity at SLA in a capacity
   study, task error rate) by exact permutation tests, quality item by item (paired), and, on a night where some
   window failed, the failed windows; Holm over that family. Each test's null is "worse by at most the
   tolerance", and a regression needs a Holm-adjusted p <= alpha and a point change beyond the tolerance, so a
   config that changed by no more than the tolerance (unchanged included) raises a false alarm on at most alpha
   of nights.
4. Failed windows (a run that raised a TrialError) are counted and reported with their reasons, never dropped:
   the other metrics use the measured windows; more failures in the current arm than the baseline's is itself a
   regression when Fisher's exact test says so after Holm, and a current arm that measured nothing at all is a
   regression outright (the gate cannot pass on nothing), naming the failure reasons.
5. N new trials resume the study (the sampler already knows every earlier trial: a warm start). If the policy
   now picks a different trial, a new bundle version is exported.
Writes reports/nightly/<study>/<timestamp>.md and .json; the CLI exits 5 on a regression.
Without `--force` the two arms run the same config: the night checks that the recommendation still runs and
measures its noise, but a change shared by both arms (a new engine version) is not a difference it can see.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autotune.config import KNOBS, TrialConfig, check_value, load_space, load_workload
from autotune.errors import ConfigError, TrialError
from autotune.measure import Comparison, Gate, Window, compare_arms, gates, power_warning
from autotune.secrets import scrub, scrub_obj

ARMS = ("baseline", "current")


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
    windows: dict[str, list[Window]] = field(default_factory=dict)  # arm -> its windows in run order
    untested: dict[str, str] = field(default_factory=dict)  # metric -> why it was not tested
    gates: list[Gate] = field(default_factory=list)
    alpha: float = 0.05
    warning: str | None = None
    recorded: dict[str, float] = field(default_factory=dict)  # the incumbent's selected window (not tested)
    pick_note: str = ""  # why a changed pick was or was not re-exported

    @property
    def regressions(self) -> list[Comparison]:
        return [c for c in self.comparisons if c.regressed]


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
                quality_tolerance: float = 0.05, reporter=None, storage_option: str = "--storage",
                capacity_tolerance: float = 0.25, error_tolerance: float = 0.02,
                warn: Callable[[str], None] | None = None, say: Callable[[str], None] | None = None,
                min_quality: float | None = None) -> NightlyResult:
    """confirm: windows per arm. warn: called once with a line when `confirm` cannot reach alpha; say: a line
    per finished window; min_quality: the pick policy's stated quality floor (export's --min-quality)."""
    from autotune.search import trial_inputs
    from autotune.stores import load_study, probe_dir

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

    bundle, incumbent = _incumbent(study, space, exports, study_name, policy, min_quality)
    base_dir = run_dir / study_name / f"trial-{incumbent:04d}"
    base_config = TrialConfig.model_validate(json.loads((base_dir / "resolved-config.json").read_text()))
    configs = {"baseline": base_config, "current": apply_forced(base_config, forced)}
    window_gates = gates(workload.load_protocol, latency_tolerance, capacity_tolerance, error_tolerance)
    warning = power_warning(confirm, alpha, len(window_gates) + 1)  # + quality
    if warning and warn:
        warn(warning)
    recorded = _recorded(study, incumbent, window_gates)

    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    inputs = trial_inputs(space, workload, wl_file)
    windows = _ab_windows(configs, inputs, space, run_dir, run_dir / study_name / f"nightly-{stamp}", confirm,
                          window_gates, reporter, say)
    verdict = compare_arms(windows["baseline"], windows["current"], window_gates, alpha, quality_tolerance)
    reexported, note = _search_on(study_name, storage, attrs, space, wl_file, run_dir, exports, (policy, min_quality),
                                  incumbent, bundle, new_trials, reporter)
    result = NightlyResult(study_name, incumbent, verdict.comparisons, new_trials, reexported, Path(), Path(),
                           forced, windows, verdict.untested, window_gates, alpha, warning, recorded, note)
    return _write_report(result, reports, stamp, confirm)


def _incumbent(study, space, exports: Path, study_name: str, policy: str,
               min_quality: float | None = None) -> tuple[dict[str, Any] | None, int]:
    """(the latest exported bundle or None, the trial it recommends, else the one the policy picks now)."""
    from autotune.ops.policy import candidates, pick

    bundle = latest_bundle(exports, study_name)
    if bundle is not None:
        return bundle, bundle["trial"]
    try:
        return None, pick(candidates(study), space, policy, min_quality)[0].number
    except ValueError as exc:
        raise ConfigError(study_name, "--policy", str(exc), policy) from None


def _ab_windows(configs: dict[str, TrialConfig], inputs, space, run_dir: Path, night_dir: Path, confirm: int,
                window_gates, reporter, say: Callable[[str], None] | None) -> dict[str, list[Window]]:
    """`confirm` rounds of one window per arm, ABBA-ordered, each on a fresh engine launch."""
    from autotune.engines import EngineRegistry, keeper_for

    keeper = keeper_for(space.engine, EngineRegistry(run_dir / "engines"), endpoints=space.endpoints)
    windows: dict[str, list[Window]] = {arm: [] for arm in ARMS}
    try:
        for i in range(confirm):
            for arm in (ARMS if i % 2 == 0 else ARMS[::-1]):  # ABBA: an order effect falls on both arms alike
                label = f"{arm}-{i}"
                keeper.close()  # every window on a fresh engine launch
                window = measure_window(configs[arm], inputs, keeper, night_dir / label, label, reporter)
                windows[arm].append(window)
                if say:
                    say(window_line(window, window_gates))
    finally:
        keeper.close()
    return windows


def _search_on(study_name: str, storage: str, attrs: dict[str, Any], space, wl_file: Path, run_dir: Path,
               exports: Path, policy: tuple[str, float | None], incumbent: int, bundle, new_trials: int,
               reporter) -> tuple[str | None, str]:
    """N new trials, then a re-export when the pick changed distinguishably (or nothing was exported yet):
    (the new bundle's path or None, a note on the new pick). `policy`: (its name, the stated quality floor)."""
    from autotune.ops.export import export_bundle
    from autotune.ops.policy import candidates, pick
    from autotune.search import SearchOptions, finished_trials, run_search
    from autotune.stores import load_study

    study = load_study(study_name, storage)
    done = finished_trials(study)  # measured trials: re-proposals of a measured config do not count toward n_trials
    if new_trials > 0:
        from autotune.progress import NullReporter

        run_search(SearchOptions(space_file=Path(attrs["space_file"]), workload_file=wl_file,
                                 n_trials=done + new_trials, study_name=study_name, storage=storage,
                                 run_dir=run_dir, mlflow_uri=attrs.get("mlflow_uri")), reporter or NullReporter())
    study = load_study(study_name, storage)
    reexported = None
    try:
        best = pick(candidates(study), space, *policy)[0].number
    except ValueError:
        best = incumbent
    note, distinct = "", False
    if best != incumbent and bundle is not None:
        distinct = distinguishable(study, space, incumbent, best)
        note = (f"the policy now picks trial {best}; it " + ("differs from" if distinct else "is not distinguishable "
                "within noise from") + f" incumbent trial {incumbent} (Holm-tested on every objective)")
    if bundle is None or distinct:
        path, _, _ = export_bundle(study, policy[0], exports, min_quality=policy[1])
        reexported = str(path)
    return reexported, note


def distinguishable(study, space, a: int, b: int) -> bool:
    """Whether the configs of trials a and b differ on some objective by the front's Holm-tested differences;
    False when the noise is unknown: a new pick by point estimate alone does not replace a recommendation."""
    from autotune.search import judge_front, resolution, study_noise, study_points, study_workload

    points = study_points(study, space)
    pair = [next((cp for cp in points if n in [t.number for t in cp.trials]), None) for n in (a, b)]
    if None in pair or pair[0] is pair[1]:
        return False
    res = resolution(space, study_workload(study))
    labels = judge_front(pair, space, study_noise(study, points, space, res), res).labels
    return "?" not in labels.values() and labels[pair[0].key] != labels[pair[1].key]


def apply_forced(config: TrialConfig, forced: dict[str, Any]) -> TrialConfig:
    """The config with forced knob values (server and client parts); the same config when nothing is forced."""
    if not forced:
        return config
    server = {k: v for k, v in forced.items() if KNOBS[k].part == "server"}
    client = {k: v for k, v in forced.items() if KNOBS[k].part == "client"}
    return TrialConfig(server=config.server.model_copy(update=server), client=config.client.model_copy(update=client))


def measure_window(config: TrialConfig, inputs, keeper, trial_dir: Path, label: str, reporter=None) -> Window:
    """One run of one arm; a TrialError is a failed window (with its reason), not an exception."""
    from autotune.search import run_trial

    def phase(name: str) -> None:
        if reporter is not None:
            reporter.phase(f"{label}: {name}")

    try:
        result = run_trial(config, inputs, keeper, trial_dir, phase)
    except TrialError as exc:
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return Window(label, failure=f"{getattr(exc, 'reason', 'trial_error')}: {message}"[:300])
    metrics = {k: float(v) for k, v in result.metrics.items() if isinstance(v, int | float)}
    return Window(label, metrics, dict(getattr(result, "item_scores", {}) or {}))


def window_line(w: Window, window_gates: list[Gate]) -> str:
    if not w.ok:
        return f"{w.label}: FAILED {w.failure}"
    names = [g.metric for g in window_gates] + ["quality"]
    return f"{w.label}: " + "  ".join(f"{m}={w.metrics[m]:.4g}" for m in names if m in w.metrics)


def _recorded(study, incumbent: int, window_gates: list[Gate]) -> dict[str, float]:
    trial = next((t for t in study.trials if t.number == incumbent), None)
    metrics = (trial.user_attrs.get("metrics") or {}) if trial is not None else {}
    return {m: float(metrics[m]) for m in [g.metric for g in window_gates] + ["quality"]
            if isinstance(metrics.get(m), int | float)}


def _fmt(v: float | None) -> str:
    return "" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.4g}"


def _write_report(r: NightlyResult, reports: Path, stamp: str, confirm: int) -> NightlyResult:
    out = reports / r.study
    out.mkdir(parents=True, exist_ok=True)
    r.report_md, r.report_json = out / f"{stamp}.md", out / f"{stamp}.json"
    verdict = "REGRESSION" if r.regressions else "ok"
    names = [g.metric for g in r.gates] + ["quality"]
    windows = {arm: [{"run": w.label, "ok": w.ok, "failure": w.failure or None,
                      "values": {m: w.metrics[m] for m in names if m in w.metrics},
                      "items_scored": len(w.item_scores)} for w in ws] for arm, ws in r.windows.items()}
    failed = {arm: [w.label for w in ws if not w.ok] for arm, ws in r.windows.items()}
    data = {"study": r.study, "timestamp": stamp, "verdict": verdict, "incumbent_trial": r.incumbent_trial,
            "windows_per_arm": confirm, "design": "interleaved baseline/current windows, each on a fresh engine",
            "alpha": r.alpha, "family_size": len(r.comparisons), "warning": r.warning, "forced": r.forced,
            "comparisons": [c.row() for c in r.comparisons], "untested": r.untested, "windows": windows,
            "failed_windows": failed, "recorded_selected_window": r.recorded, "new_trials": r.new_trials,
            "reexported": r.reexported, "pick_note": r.pick_note}
    r.report_json.write_text(json.dumps(scrub_obj(data), indent=2, default=str))
    lines = [f"# Nightly {r.study} {stamp}: {verdict}", "",
             f"Incumbent trial {r.incumbent_trial}: baseline = its recorded config, current = "
             + (f"the baseline with forced {r.forced}" if r.forced else "the same config (nothing forced)")
             + f"; {confirm} windows per arm, interleaved, each on a fresh engine. One-sided tests, Holm over "
             f"{len(r.comparisons)} metrics at alpha {r.alpha:g}.", ""]
    if r.warning:
        lines += [f"**Warning:** {r.warning}.", ""]
    lines += ["## Verdict", ""]
    lines += [f"- {'**REGRESSED** ' if c.regressed else ''}{c.line()}" for c in r.comparisons]
    lines += [f"- {m}: not tested ({why})" for m, why in r.untested.items()]
    lines += ["", "## Windows", "", "| run | " + " | ".join(names) + " | status |",
              "|---" * (len(names) + 2) + "|"]
    for i in range(confirm):
        for arm in (ARMS if i % 2 == 0 else ARMS[::-1]):  # in the order they ran (ABBA)
            if i < len(r.windows.get(arm, [])):
                w = r.windows[arm][i]
                lines.append(f"| {w.label} | " + " | ".join(_fmt(w.metrics.get(m)) for m in names)
                             + f" | {'ok' if w.ok else 'FAILED ' + w.failure.replace('|', '/')} |")
    if r.recorded:
        lines += ["", "The incumbent's recorded window (selected as the best, so optimistic; not tested): "
                  + ", ".join(f"{m} {_fmt(v)}" for m, v in r.recorded.items()) + "."]
    lines += ["", f"{r.new_trials} new trials; " + (f"re-exported: `{r.reexported}`" if r.reexported
                                                   else "the recommendation stands.")
              + (f" ({r.pick_note}.)" if r.pick_note else "")]
    r.report_md.write_text(scrub("\n".join(lines) + "\n"))
    return r
