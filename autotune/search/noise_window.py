"""A noise estimate in every study, without `--confirm`: the first config measured is measured again, early,
on a freshly launched engine (`search.noise_repeats` times, 1 by default).

Every interval and every "distinguishable" class on the front rests on the window-to-window noise pooled over
configs measured more than once (autotune.search.config_points). A study with no repeat has none, so its front
would show no interval and no class. The first config is the warm start when the space enqueues one (today's
production config, chosen before any measurement), so its repeat is not selected for being good: its windows
merge into the config's estimate as search windows do. The repeat runs on a fresh launch because launch-to-launch
variance is part of what a user's next deployment will see. It is not a trial: it does not count toward
`n_trials`, and a failed repeat is kept and counted as a failed window, never dropped.
"""

from __future__ import annotations

from pathlib import Path

import optuna

from autotune.config import SpaceConfig
from autotune.search.config_points import trial_key


def noise_target(study, space: SpaceConfig):
    """The study's first complete full-fidelity measurement, or None."""
    done = [t for t in study.get_trials(deepcopy=False, states=[optuna.trial.TrialState.COMPLETE])
            if t.user_attrs.get("fidelity", "full") == "full" and t.user_attrs.get("duplicate_of") is None]
    return min(done, key=lambda t: t.number) if done else None


def noise_windows_due(study, space: SpaceConfig) -> int:
    """How many noise windows the study still owes (0 once `noise_repeats` were measured or failed)."""
    store = study.user_attrs.get("noise", {})
    return max(0, space.search.noise_repeats - sum(len(v) for v in store.values() if isinstance(v, list)))


def measure_noise(study, space: SpaceConfig, inputs, keeper, tracker, study_dir: Path, reporter) -> None:
    """The owed noise windows of the first measured config, each on a freshly launched engine. Resumable: the
    store is a study attribute, written after every window."""
    from autotune.search.confirm import keep_window, repeat_window

    target = noise_target(study, space)
    if target is None:
        return
    key = trial_key(target, space)
    while noise_windows_due(study, space):
        rnd = len(study.user_attrs.get("noise", {}).get(key, []))
        reporter.phase(f"noise: re-measuring trial {target.number} on a fresh engine "
                       f"({rnd + 1}/{space.search.noise_repeats})")
        keeper.close()  # a fresh launch: repeats on one engine would hide launch-to-launch variance
        window = repeat_window(study, inputs, keeper, study_dir, target.number, reporter.phase, "noise", rnd)
        keep_window(study, space, tracker, "noise", key, window, target.user_attrs.get("mlflow_run_id"))
