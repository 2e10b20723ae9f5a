"""Noise: re-measure the front (`--confirm K`) and say which front members are distinguishable.

Each front member is measured K more times (ordered by server part, so the engine is reused). Its objective
values over the K+1 windows give a spread (min, max, coefficient of variation); two members are
indistinguishable within noise when their ranges overlap on every objective.
"""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import numpy as np
import optuna

from autotune.config.space import SpaceConfig
from autotune.knobs import TrialConfig


def confirm_front(study, space: SpaceConfig, inputs, keeper, tracker, study_dir: Path, reporter, k: int) -> None:
    """Re-measure every full-fidelity front member k times; values go to the study's `confirm` user attr
    (trial number -> objective -> values) and to the trial's MLflow run as metric history
    (`confirm.<objective>`, one step per window)."""
    from autotune.errors import TrialError
    from autotune.front import front_rows
    from autotune.trial import run_trial

    _, front = front_rows(study, space)
    trials = {t.number: t for t in study.trials}
    configs = []
    for r in front:
        cfg = TrialConfig.model_validate(json.loads((study_dir / f"trial-{r['trial']:04d}" /
                                                     "resolved-config.json").read_text()))
        configs.append((r["trial"], cfg))
    configs.sort(key=lambda tc: json.dumps(tc[1].server.model_dump(), sort_keys=True))  # engine reuse
    names = [o.metric for o in space.objectives]
    # finished trials are immutable in Optuna: confirmations live in a study attr, keyed by trial number
    store = dict(study.user_attrs.get("confirm", {}))
    for number, cfg in configs:
        t = trials[number]
        done = dict(store.get(str(number), {}))
        have = len(done.get(names[0], []))
        for i in range(have, k):
            reporter.phase(f"confirming trial {number} ({i + 1}/{k})")
            try:
                res = run_trial(cfg, inputs, keeper, study_dir / f"trial-{number:04d}" / f"confirm-{i}", reporter.phase)
            except TrialError as err:
                done.setdefault("failed", []).append(err.reason)
                continue
            for name in names:
                done.setdefault(name, []).append(res.metrics.get(name, math.nan))
            store[str(number)] = done
            study.set_user_attr("confirm", store)
            if t.user_attrs.get("mlflow_run_id"):
                tracker.log_history(t.user_attrs["mlflow_run_id"], {f"confirm.{n}": done[n][-1] for n in names},
                                    step=len(done[names[0]]))


def spreads(study, space: SpaceConfig) -> dict[int, dict[str, dict[str, float]]]:
    """trial -> objective -> {mean, min, max, cv} over the original and the confirmation windows."""
    out = {}
    store = study.user_attrs.get("confirm", {})
    for t in study.get_trials(deepcopy=False, states=[optuna.trial.TrialState.COMPLETE]):
        conf = store.get(str(t.number))
        if not conf:
            continue
        per = {}
        for o, original in zip(space.objectives, t.values, strict=True):
            xs = np.array([original, *conf.get(o.metric, [])], dtype=float)
            xs = xs[~np.isnan(xs)]
            mean = float(xs.mean())
            per[o.metric] = {"mean": mean, "min": float(xs.min()), "max": float(xs.max()), "n": float(len(xs)),
                             "cv": float(xs.std(ddof=1) / abs(mean)) if len(xs) > 1 and mean else math.nan}
        out[t.number] = per
    return out


def indistinguishable(spread: dict[int, dict[str, dict[str, float]]]) -> list[tuple[int, int]]:
    """Pairs of confirmed trials whose [min, max] ranges overlap on every objective."""
    pairs = []
    for a, b in itertools.combinations(sorted(spread), 2):
        if all(spread[a][m]["min"] <= spread[b][m]["max"] and spread[b][m]["min"] <= spread[a][m]["max"]
               for m in spread[a]):
            pairs.append((a, b))
    return pairs


def noise_markdown(spread: dict[int, dict[str, dict[str, float]]]) -> list[str]:
    if not spread:
        return []
    metrics = list(next(iter(spread.values())))
    md = ["Confirmation runs (`--confirm`): mean [min, max] and coefficient of variation over all windows.", "",
          "| trial | windows | " + " | ".join(metrics) + " |", "|" + "---|" * (2 + len(metrics))]
    for n, per in sorted(spread.items()):
        cells = [f"{per[m]['mean']:.4g} [{per[m]['min']:.4g}, {per[m]['max']:.4g}] cv {per[m]['cv']:.1%}"
                 for m in metrics]
        md.append(f"| {n} | {int(per[metrics[0]]['n'])} | " + " | ".join(cells) + " |")
    pairs = indistinguishable(spread)
    md += ["", "Indistinguishable within noise (ranges overlap on every objective): "
           + (", ".join(f"{a} vs {b}" for a, b in pairs) if pairs else "none; every pair differs beyond noise."), ""]
    return md
