"""Multi-fidelity screening (`search.screening_s`): a short window first, the full window only for a config that
could still reach the front.

A screened-out trial is told to the sampler as PRUNED (its short-window numbers are kept as user attributes,
never as objective values), so it can never be on the front, be exported, picked by a policy or serve as a
nightly baseline. The margin a screened value gets is measured, not assumed: every trial that had both a screen
and a full window gives, per objective, the log ratio screen/full; the margin is the upper 95% prediction bound
of that ratio's size. Until MIN_PAIRS such pairs exist every trial gets the full window (calibration).
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import optuna
from scipy import stats

from autotune.engines import EngineKeeper
from autotune.objectives import evaluate
from autotune.search.front import could_reach_front
from autotune.search.trial import TrialInputs, run_trial

MIN_PAIRS = 3


def margins(study, space) -> list[float] | None:
    """Per objective, how much better the full window may turn out than the screen said (relative), or None while
    fewer than MIN_PAIRS trials measured both."""
    pairs = [(t.user_attrs["screen_metrics"], t.user_attrs.get("metrics", {}))
             for t in study.get_trials(deepcopy=False, states=[optuna.trial.TrialState.COMPLETE])
             if t.user_attrs.get("screen_metrics") and t.user_attrs.get("fidelity") == "full"]
    if len(pairs) < MIN_PAIRS:
        return None
    out = []
    for o in space.objectives:
        m = o.metric
        logs = np.array([math.log(s[m] / f[m]) for s, f in pairs
                         if 0 < s.get(m, 0) < math.inf and 0 < f.get(m, 0) < math.inf])
        if len(logs) < MIN_PAIRS:
            out.append(math.inf)  # cannot be calibrated (non-positive values): never screen out on it
            continue
        n = len(logs)
        bound = abs(logs.mean()) + stats.t.ppf(0.95, n - 1) * logs.std(ddof=1) * math.sqrt(1 + 1 / n)
        out.append(math.expm1(bound))
    return out


def measure_screened(study, config, inputs: TrialInputs, keeper: EngineKeeper, trial_dir: Path, reporter):
    """(result, fidelity, screening metrics or None). With `search.screening_s`, a short window first; the full
    window (on the same, still running engine) only when the screened point could still reach the front."""
    search = inputs.space.search
    if not search.screening_s:
        return run_trial(config, inputs, keeper, trial_dir, reporter.phase), "full", None
    wl = inputs.workload
    short = dataclasses.replace(inputs, complete_eval=False, workload=wl.model_copy(update={
        "duration_s": search.screening_s, "warmup_s": min(wl.warmup_s, search.screening_s),
        "capacity": wl.capacity.model_copy(update={"level_s": min(wl.capacity.level_s, search.screening_s)})}))
    screen = run_trial(config, short, keeper, trial_dir / "screen", reporter.phase)
    ev = evaluate(screen.metrics, inputs.space.objectives, inputs.space.constraints)
    margin = margins(study, inputs.space) if search.screening_margin == "auto" else \
        [search.screening_margin] * len(ev.values)
    screen.metrics["screening_margin_max"] = max(margin) if margin else math.nan
    if margin is not None and not could_reach_front(study, inputs.space, ev.values, margin):
        return screen, "screen", None
    reporter.phase("full window")
    return run_trial(config, inputs, keeper, trial_dir, reporter.phase), "full", screen.metrics
