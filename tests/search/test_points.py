"""One config = one point: trials of an identical config and confirmation windows merge; a confirmed config uses
its confirmation windows only; cost follows the merged capacity; a config whose confirmations all failed is not
recommended; intervals and classes come from the pooled window noise."""

from __future__ import annotations

import math

import optuna
import pytest

from autotune.config.space import Constraint, Objective
from autotune.ops.policy import candidates
from autotune.search.config_points import study_points
from autotune.search.front import front_rows


class Space:
    objectives = [Objective(metric="p95_task_ms_at_load", direction="minimize"),
                  Objective(metric="usd_per_1k_tasks", direction="minimize"),
                  Objective(metric="quality", direction="maximize")]
    constraints = [Constraint(metric="task_error_rate", op="<=", value=0.02)]


def _trial(study, key: str, p95: float, cap: float, items: dict[str, float], number_param: int) -> None:
    t = study.ask()
    t.set_user_attr("config_key", key)
    t.set_user_attr("fidelity", "full")
    usd = 100.0 / cap
    metrics = {"p95_task_ms_at_load": p95, "capacity_tps": cap, "usd_per_1k_tasks": usd, "task_error_rate": 0.0,
               "quality": sum(items.values()) / len(items)}
    t.set_user_attr("metrics", metrics)
    t.set_user_attr("item_scores", items)
    study.tell(t, [p95, usd, metrics["quality"]])


def _study():
    return optuna.create_study(directions=["minimize", "minimize", "maximize"])


def test_confirmed_config_is_one_row_from_its_confirmation_windows_only():
    study = _study()
    items = {f"i{i}": float(i % 2) for i in range(10)}
    _trial(study, "A", 800.0, 4.0, items, 0)  # the lucky selecting window
    _trial(study, "B", 1500.0, 2.0, items, 1)
    study.set_user_attr("confirm", {"A": [
        {"metrics": {"p95_task_ms_at_load": 1000.0, "capacity_tps": 4.0, "usd_per_1k_tasks": 25.0,
                     "task_error_rate": 0.0}, "items": items, "round": 0},
        {"metrics": {"p95_task_ms_at_load": 1210.0, "capacity_tps": 2.0, "usd_per_1k_tasks": 50.0,
                     "task_error_rate": 0.0}, "items": items, "round": 1}]})
    rows, front = front_rows(study, Space, judge=True)
    a = next(r for r in rows if r["config_key"] == "A")
    assert a["windows"] == 2 and a["confirmed"] and a["trials"] == [0]
    assert a["p95_task_ms_at_load"] == pytest.approx(math.sqrt(1000.0 * 1210.0))  # geometric mean, 800 excluded
    cap = math.sqrt(4.0 * 2.0)
    assert a["usd_per_1k_tasks"] == pytest.approx(100.0 / cap), "cost at the merged capacity"
    # the noise is pooled from A's three windows (800, 1000, 1210): B, measured once, gets an interval too
    b = next(r for r in rows if r["config_key"] == "B")
    assert b["p95_task_ms_at_load_low"] < 1500.0 < b["p95_task_ms_at_load_high"]
    assert all(r["class"] for r in front)


def test_identical_trials_merge_and_failed_confirmations_are_not_recommended():
    study = _study()
    items = {f"i{i}": 1.0 for i in range(5)}
    _trial(study, "A", 1000.0, 4.0, items, 0)
    _trial(study, "A", 1100.0, 4.0, items, 1)  # the same config measured again (e.g. another worker)
    _trial(study, "C", 900.0, 4.0, items, 2)
    points = study_points(study, Space)
    assert [(cp.key, [t.number for t in cp.trials]) for cp in points] == [("A", [0, 1]), ("C", [2])]
    study.set_user_attr("confirm", {"C": [{"metrics": {}, "items": {}, "round": 0, "failed": "engine_hung"}]})
    cands = candidates(study, Space)
    assert [c.number for c in cands] == [0], "C could not be re-measured: not recommendable"
    assert cands[0].metrics["windows"] == 2


def test_a_trial_from_before_config_keys_merges_with_a_new_trial_of_its_config():
    from autotune.config.knobs import split_values
    from autotune.config.space import load_space
    from autotune.samplers.optuna_sampler import suggest
    from autotune.search.config_points import config_key, trial_key

    space = load_space("search_spaces/quickstart.yaml", check_paths=False)
    old = optuna.create_study(directions=["minimize"] * 3)
    t = old.ask()
    values = suggest(t, space)
    old.tell(t, [1.0, 1.0, 1.0])
    legacy = old.trials[0]  # no `config_key` attribute, as trials recorded before this change
    assert "config_key" not in legacy.user_attrs
    assert trial_key(legacy, space) == config_key(split_values(values))


def test_a_changed_pick_is_distinguishable_only_by_a_tested_difference(monkeypatch):
    """nightly re-exports a new pick only when the front's Holm-tested differences tell it from the incumbent;
    with the noise unknown (no config measured twice) a point estimate alone never replaces it."""
    from autotune.ops import nightly

    monkeypatch.setattr("autotune.search.front.study_workload", lambda study: None)
    study = _study()
    items = {f"i{i}": 1.0 for i in range(10)}
    _trial(study, "A", 1000.0, 4.0, items, 0)
    _trial(study, "B", 3000.0, 4.0, items, 1)
    assert not nightly.distinguishable(study, Space, 0, 1), "no repeat: the noise is unknown"
    window = {"metrics": {"p95_task_ms_at_load": 1020.0, "capacity_tps": 4.0, "usd_per_1k_tasks": 25.0,
                          "task_error_rate": 0.0}, "items": items, "round": 0}
    study.set_user_attr("confirm", {"A": [window, {**window, "metrics": {**window["metrics"],
                                                                        "p95_task_ms_at_load": 980.0}}]})
    assert nightly.distinguishable(study, Space, 0, 1), "3x slower with a 2% window noise"
    assert not nightly.distinguishable(study, Space, 0, 0)


def test_a_config_keeps_its_key_when_knobs_are_added_or_retyped():
    """Keys recorded by earlier versions (the literals below: before `cpu_*` and `route_*` knobs existed, and
    while `kv_cache_space_gb` was a float) still name the same configs, so a resumed study merges its trials."""
    from autotune.config import ClientConfig, ServerConfig, TrialConfig
    from autotune.search.config_points import config_key

    assert config_key(TrialConfig(server=ServerConfig(), client=ClientConfig())) == "b85295593d9c5d13"
    assert config_key(TrialConfig(server=ServerConfig(kv_cache_space_gb=1, max_num_seqs=16),
                                  client=ClientConfig(architecture="judge"))) == "fc7ad9a3fd5862a0"
    assert config_key(TrialConfig(server=ServerConfig(cpu_reserved_cores=0), client=ClientConfig())) \
        != "b85295593d9c5d13", "a set new knob is part of the identity"


def test_merged_cost_of_a_free_api_plan_is_zero_not_inf():
    """An API-only plan at price 0 costs 0 per task (no host hours), at any capacity; a paid host at capacity 0 is
    inf; a mixed plan is its API part plus the host's hours over the merged capacity."""
    from autotune.search.config_points import merged_cost

    api_only = [{"metrics": {"capacity_tps": 2.0, "usd_per_1k_tasks": 0.0, "usd_per_1k_tasks_hosted": 0.0,
                             "usd_per_1k_tasks_api": 0.0}}]
    assert merged_cost(api_only, 2.0, 0.0) == 0.0
    host = [{"metrics": {"capacity_tps": 2.0, "usd_per_1k_tasks": 0.5, "usd_per_1k_tasks_hosted": 0.4,
                         "usd_per_1k_tasks_api": 0.1}},
            {"metrics": {"capacity_tps": 4.0, "usd_per_1k_tasks": 0.3, "usd_per_1k_tasks_hosted": 0.2,
                         "usd_per_1k_tasks_api": 0.1}}]
    assert merged_cost(host, math.sqrt(8.0), 0.1) == pytest.approx(0.1 + 0.8 / math.sqrt(8.0))
    dead = [{"metrics": {"capacity_tps": 0.0, "usd_per_1k_tasks": math.inf, "usd_per_1k_tasks_hosted": math.inf}}]
    assert merged_cost(dead, 0.0, 0.0) == math.inf
