"""`--confirm K`: re-measure the front in K rounds of independent windows, on freshly launched engines.

The front members (configs) at the end of the search get K more windows each. Every round starts by stopping
the engine, so each round's windows run on engines launched for that round: launch-to-launch variance is part
of what the repeats see. The windows merge into their config's point (search/config_points.py); a confirmed
config is then estimated from its confirmation windows only, because the search window that put it on the front was
selected for being good. The front as it stood before confirmation is recorded (`confirm_front`), so the report
can say how much of it survived. A failed confirmation window is kept as such and counted, never dropped.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import optuna

from autotune.config import SpaceConfig, TrialConfig
from autotune.search.config_points import capacity_priors, study_points, window_of


def confirm_front(study, space: SpaceConfig, inputs, keeper, tracker, study_dir: Path, reporter, k: int) -> None:
    """K rounds over the front recorded before the first confirmation and today's front (a resumed study's new
    members too); resumable: a config's done rounds are skipped."""
    from autotune.search.front import front_rows

    current = [r["config_key"] for r in front_rows(study, space)[1]]
    before = study.user_attrs.get("confirm_front")
    if before is None:  # the front as the search left it: what the report's survival figure is about
        before = current
        study.set_user_attr("confirm_front", before)
    points = {cp.key: cp for cp in study_points(study, space)}
    targets = [points[key] for key in dict.fromkeys([*before, *current]) if key in points]  # a resumed study's too
    targets.sort(key=lambda cp: json.dumps(cp.trials[0].user_attrs.get("server"), sort_keys=True))  # reuse in a round
    for rnd in range(k):
        store = study.user_attrs.get("confirm", {})
        todo = [cp for cp in targets if len(store.get(cp.key) or []) <= rnd]
        if not todo:
            continue
        keeper.close()  # a fresh launch per round: repeats on one engine would hide launch-to-launch variance
        for cp in todo:
            reporter.phase(f"confirming trial {cp.number} (round {rnd + 1}/{k})")
            window = repeat_window(study, inputs, keeper, study_dir, cp.number, reporter.phase, "confirm", rnd)
            keep_window(study, space, tracker, "confirm", cp.key, window, cp.trials[0].user_attrs.get("mlflow_run_id"))


def repeat_window(study, inputs, keeper, study_dir: Path, number: int, phase, kind: str, rnd: int) -> dict[str, Any]:
    """One more window of the config trial `number` measured (its resolved config), in its `<kind>-<rnd>` folder,
    its levels starting from the study's measured capacities; a failure is a window marked `failed`, never
    dropped. `--confirm` rounds and noise windows (search/noise_window.py) are both made here."""
    from autotune.errors import TrialError
    from autotune.search.trial import run_trial

    trial_dir = study_dir / f"trial-{number:04d}"
    config = TrialConfig.model_validate(json.loads((trial_dir / "resolved-config.json").read_text()))
    try:
        res = run_trial(config, dataclasses.replace(inputs, capacity_priors=capacity_priors(study)), keeper,
                        trial_dir / f"{kind}-{rnd}", phase)
    except TrialError as err:
        return {"metrics": {}, "items": {}, "round": rnd, "trial": number, "failed": err.reason}
    return window_of(res.metrics, res.item_scores, round=rnd, trial=number,
                     fresh_engine=not res.metrics.get("engine_reused"))


def keep_window(study, space: SpaceConfig, tracker, kind: str, key: str, window: dict[str, Any],
                run_id: str | None) -> None:
    """Append a repeat window to the study attribute `kind` (finished trials are immutable: windows live there)
    and log its objectives to the config's first MLflow run as `<kind>.<metric>` history."""
    store: dict[str, Any] = dict(study.user_attrs.get(kind, {}))  # an older format's entries are kept as is
    store.setdefault(key, []).append(window)
    study.set_user_attr(kind, store)
    if run_id and not window.get("failed"):
        tracker.log_history(run_id, {f"{kind}.{o.metric}": window["metrics"].get(o.metric, float("nan"))
                                     for o in space.objectives}, step=len(store[key]))


def audit_screening(study, space: SpaceConfig, inputs, keeper, study_dir: Path, reporter) -> None:
    """With screening and `--confirm`: measure every screened-out config once at full fidelity, so the report can
    say what screening lost (how many would have reached the front) next to what it saved. Resumable."""
    from autotune.errors import TrialError
    from autotune.search.trial import run_trial

    screened = [t for t in study.get_trials(deepcopy=False, states=[optuna.trial.TrialState.PRUNED])
                if t.user_attrs.get("fidelity") == "screen" and t.user_attrs.get("duplicate_of") is None]
    audit = dict(study.user_attrs.get("screen_audit", {}))
    for t in screened:
        if str(t.number) in audit:
            continue
        reporter.phase(f"auditing screened-out trial {t.number}")
        config = TrialConfig.model_validate(json.loads((study_dir / f"trial-{t.number:04d}" / "screen" /
                                                        "resolved-config.json").read_text()))
        try:
            res = run_trial(config, inputs, keeper, study_dir / f"trial-{t.number:04d}" / "audit", reporter.phase)
            audit[str(t.number)] = window_of(res.metrics, res.item_scores)
        except TrialError as err:
            audit[str(t.number)] = {"metrics": {}, "items": {}, "failed": err.reason}
        study.set_user_attr("screen_audit", audit)


def screening_summary(study, space: SpaceConfig) -> dict[str, Any] | None:
    """What screening saved (full windows skipped, in estimated seconds) and lost (screened-out configs whose
    audited full window would have been on the front); None when nothing was screened out."""
    from autotune.objectives import evaluate
    from autotune.pareto import front_indices
    from autotune.search.front import front_rows

    screened = [t for t in study.get_trials(deepcopy=False, states=[optuna.trial.TrialState.PRUNED])
                if t.user_attrs.get("fidelity") == "screen" and t.user_attrs.get("duplicate_of") is None]
    if not screened:
        return None
    full = [t.user_attrs.get("metrics", {}) for t in study.get_trials(
        deepcopy=False, states=[optuna.trial.TrialState.COMPLETE]) if t.user_attrs.get("screen_metrics")]
    per_full = float(np.mean([m.get("trial_wall_s", 0.0) for m in full])) if full else math.nan
    _, front = front_rows(study, space)
    directions = [o.direction for o in space.objectives]
    base = [[r[o.metric] for o in space.objectives] for r in front]
    audit = study.user_attrs.get("screen_audit", {})
    lost, audited = [], 0
    for t in screened:
        window = audit.get(str(t.number))
        if not window or window.get("failed"):
            continue
        audited += 1
        ev = evaluate(window["metrics"], space.objectives, space.constraints)
        if ev.feasible and len(base) in front_indices([*base, ev.values], directions):
            lost.append(t.number)
    return {"screened_out": len(screened), "saved_s": len(screened) * per_full, "audited": audited,
            "would_reach_front": lost}


def survival_summary(study, space: SpaceConfig) -> dict[str, Any] | None:
    """How much of the pre-confirmation front is still on the front of the confirmed estimates; None when the
    study was not confirmed."""
    from autotune.measure import survival
    from autotune.search.config_points import resolution, study_noise

    before = study.user_attrs.get("confirm_front")
    if not before:
        return None
    from autotune.objectives import evaluate

    points = [cp for cp in study_points(study, space) if cp.key in before]
    # a member whose confirmation windows break a constraint (or all failed) did not survive
    confirmed = [cp for cp in points if cp.confirmed
                 and evaluate(cp.metrics(), space.objectives, space.constraints).feasible]
    res = resolution(space)
    noise = study_noise(study, study_points(study, space), space, res)
    names = [o.metric for o in space.objectives if o.metric != "quality"]
    out = survival(before, [cp.point(names, res) for cp in confirmed], [(o.metric, o.direction)
                                                                       for o in space.objectives], noise)
    out["trials"] = {cp.key: cp.number for cp in points}
    out["failed_windows"] = sum(1 for w in study.user_attrs.get("confirm", {}).values() if isinstance(w, list)
                                for x in w if x.get("failed"))
    return out
