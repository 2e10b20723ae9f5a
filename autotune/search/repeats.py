"""Re-proposals: one config is one point, so a config the study already measured is not measured again.

Samplers (TPE above all, on small categorical spaces) propose a measured config again. Such a trial is told the
config's current estimate without a measurement, marked `duplicate_of`, and does not count toward n_trials;
after REPEAT_STREAK in a row the search draws an unmeasured config at random instead. Deliberate repeats are
`--confirm` windows, which merge into the same point (autotune.search.config_points).
"""

from __future__ import annotations

import optuna

from autotune.config import ServerConfig, SpaceConfig, split_values
from autotune.objectives import constraint_names, evaluate
from autotune.samplers import set_constraints, suggest
from autotune.search.config_points import config_key, study_points, trial_key


def repeat_proposals(study) -> int:
    return sum(1 for t in study.trials if t.user_attrs.get("duplicate_of") is not None)


REPEAT_STREAK = 3  # re-proposals in a row before an unmeasured config is drawn at random instead


def measured_before(study, key: str, number: int, space: SpaceConfig):
    """The earliest other trial that measured this config (complete, or screened out), or None."""
    states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    for t in study.get_trials(deepcopy=False, states=states):
        if t.number != number and t.user_attrs.get("duplicate_of") is None and trial_key(t, space) == key:
            return t
    return None


# launch failures that are properties of the server config; a taken port, a health timeout on a busy host, damaged
# weights (`broken_model`: once repaired, they serve) or a crash may not recur, so they never make a config
# `known_failure`
PERMANENT_LAUNCH_FAILURES = ("oom", "unsupported", "bad_config")
# failures that are properties of the config itself: proposing it again cannot succeed (transient ones can)
PERMANENT_FAILURES = (*PERMANENT_LAUNCH_FAILURES, "known_failure")


def known_launch_failure(study, server: ServerConfig):
    """An earlier trial whose identical server part the engine refused for a reason of the config itself (OOM,
    unsupported flags), or None. App-side rejections and transient faults do not count."""
    for t in study.get_trials(deepcopy=False, states=[optuna.trial.TrialState.FAIL]):
        if (t.user_attrs.get("launch_failure") and t.user_attrs.get("fail_reason") in PERMANENT_LAUNCH_FAILURES
                and t.user_attrs.get("server") == server.model_dump(mode="json")):
            return t
    return None


def failed_before(study, key: str, number: int, space: SpaceConfig):
    """The earliest other trial of this config that failed for a reason of the config itself, or None. A sampler
    that ignores failed trials (Optuna's GP) would otherwise propose it, and pay for it, again and again."""
    for t in study.get_trials(deepcopy=False, states=[optuna.trial.TrialState.FAIL]):
        if (t.number != number and t.user_attrs.get("duplicate_of") is None
                and t.user_attrs.get("fail_reason") in PERMANENT_FAILURES and trial_key(t, space) == key):
            return t
    return None


def tell_failed_repeat(study, trial, prior, reporter, what: str = "config") -> None:
    """A re-proposal of a config (or of a server part, `what`) that failed for its own reasons: FAIL again without
    a launch, not counted toward n_trials or the failure budget (it is the same failure)."""
    why = f"{what} failed in trial {prior.number} ({prior.user_attrs['fail_reason']})"
    trial.set_user_attr("duplicate_of", prior.number)
    trial.set_user_attr("fidelity", "repeat")
    trial.set_user_attr("fail_reason", "known_failure")
    trial.set_user_attr("fail_message", why)
    study.tell(trial, state=optuna.trial.TrialState.FAIL)
    note = getattr(reporter, "trial_skipped", None)
    if note:
        note(trial.number, f"{why}: not run again")


def tell_repeat(study, trial, prior, key: str, space: SpaceConfig, reporter) -> None:
    """A re-proposed config is not measured again: the sampler is told the config's current estimate (every
    window of it merged), so it learns the point is known instead of paying for it again. Not a window."""
    trial.set_user_attr("duplicate_of", prior.number)
    trial.set_user_attr("fidelity", "repeat")
    if prior.state == optuna.trial.TrialState.PRUNED:
        study.tell(trial, state=optuna.trial.TrialState.PRUNED)
    else:
        point = next((cp for cp in study_points(study, space) if cp.key == key), None)
        # (a screened trial of an older autotune is COMPLETE but no point: its own metrics)
        metrics = point.metrics() if point else prior.user_attrs.get("metrics", {})
        ev = evaluate(metrics, space.objectives, space.constraints)
        set_constraints(trial, constraint_names(space.constraints, metrics), ev.violations)
        trial.set_user_attr("feasible", ev.feasible)
        study.tell(trial, ev.values)
    note = getattr(reporter, "trial_skipped", None)
    if note:
        note(trial.number, f"config already measured by trial {prior.number}: not measured again")


def enqueue_unmeasured(study, space: SpaceConfig, seed: int | None, salt: int) -> bool:
    """Enqueue a config no trial has measured (or seen fail for its own reasons), drawn at random from the space;
    False when 200 draws found none."""
    measured = {trial_key(t, space) for t in study.trials if t.user_attrs.get("duplicate_of") is None
                and (t.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
                     or t.user_attrs.get("fail_reason") in PERMANENT_FAILURES)}
    draws = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=(seed or 0) + len(study.trials) + salt))
    for _ in range(200):
        t = draws.ask()
        values = suggest(t, space)
        config = split_values(values)
        if config_key(config) not in measured and known_launch_failure(study, config.server) is None:
            study.enqueue_trial(t.params, user_attrs={"drawn": "unmeasured"})
            return True
        draws.tell(t, state=optuna.trial.TrialState.FAIL)
    return False
