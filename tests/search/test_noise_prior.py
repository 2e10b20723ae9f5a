"""A host's launch noise, measured once (the tabular benchmark's repeat pairs), pooled into every study on that
host: the sd from pairs, pooling by sums of squares, adoption only for this host and workload, and a study with
no repeat of its own gets intervals from it."""

from __future__ import annotations

import json
import math

import optuna
import pytest

from autotune.measure import Noise
from autotune.search import noise_prior
from tests.search.test_points import Space, _study, _trial


def test_the_sd_of_one_window_from_repeat_pairs():
    got = noise_prior.from_pairs({"capacity_tps": [(1.0, math.exp(0.1)), (2.0, 2 * math.exp(-0.1)), (0.0, 1.0)],
                                  "p95_task_ms_at_load": []})
    # d = +-0.1; each pair's two windows give one degree of freedom: var = sum d^2 / 2n; the capacity-0 pair is out
    assert got == {"capacity_tps": {"sd": pytest.approx(math.sqrt(0.02 / 4)), "df": 2, "log": True}}
    same = noise_prior.from_pairs({"capacity_tps": [(2.0, 2.0), (3.0, 3.0)]}, {"capacity_tps": 0.1})
    assert same["capacity_tps"]["sd"] == pytest.approx(math.log1p(0.1) / math.sqrt(12)), \
        "two repeats on one grid step: the grid's quantization, not zero"


def test_pooling_adds_sums_of_squares_and_the_prior_alone_stands_in_for_none():
    own = {"a": Noise(0.2, 1, True), "b": Noise(math.nan, 0, True), "c": Noise(0.1, 3, False)}
    prior = {"a": Noise(0.05, 20, True), "b": Noise(0.07, 10, True), "c": Noise(0.05, 20, True)}
    got = noise_prior.pooled(own, prior)
    assert got["a"].df == 21 and got["a"].sd == pytest.approx(math.sqrt((0.04 + 0.0025 * 20) / 21))
    assert got["b"] == prior["b"], "no repeat in the study: the prior alone"
    assert got["c"] == own["c"], "another scale (the study's values were not all positive): not pooled"


def test_a_prior_is_adopted_only_on_its_host_for_its_workload(tmp_path):
    metrics = {"capacity_tps": {"sd": 0.08, "df": 40, "log": True}}
    path = noise_prior.write_prior(tmp_path, metrics, {"name": "extraction", "level_s": 8.0}, "0.32.0", "test")
    assert noise_prior.adopt(tmp_path, "extraction")["metrics"] == metrics
    assert noise_prior.adopt(tmp_path, "arithmetic") is None, "another workload's noise"
    assert noise_prior.adopt(tmp_path, "extraction", level_s=25.0) is not None, "8-s levels: wider, safe"
    assert noise_prior.adopt(tmp_path, "extraction", level_s=5.0) is None, "longer levels than ours: too narrow"
    other = json.loads(path.read_text())
    other["host"]["cores"] += 1
    path.write_text(json.dumps(other))
    assert noise_prior.adopt(tmp_path, "extraction") is None, "another host's noise"
    assert noise_prior.adopt(tmp_path / "none", "extraction") is None


def test_a_study_with_no_repeat_gets_intervals_and_classes_from_the_prior(monkeypatch):
    from autotune.search.front import front_rows

    monkeypatch.setattr("autotune.search.front.study_workload", lambda study: None)
    study = _study()
    items = {f"i{i}": float(i % 2) for i in range(10)}
    _trial(study, "A", 1000.0, 4.0, items, 0)
    _trial(study, "B", 3000.0, 2.0, items, 1)
    rows, _ = front_rows(study, Space, judge=True)
    assert all(math.isnan(r.get("p95_task_ms_at_load_low", math.nan)) for r in rows), "no repeat, no prior"
    prior = {"source": "test", "created": "now", "engine_version": "0.32.0",
             "metrics": {"p95_task_ms_at_load": {"sd": 0.05, "df": 40, "log": True},
                         "usd_per_1k_tasks": {"sd": 0.08, "df": 40, "log": True},
                         "capacity_tps": {"sd": 0.08, "df": 40, "log": True}}}
    study.set_user_attr("noise_prior", prior)
    rows, front = front_rows(study, Space, judge=True)
    a = next(r for r in rows if r["config_key"] == "A")
    assert a["p95_task_ms_at_load_low"] < 1000.0 < a["p95_task_ms_at_load_high"] < 1000.0 * math.exp(0.2)
    assert all(r["class"] != "?" for r in front) and not front[0]["noise_unknown"]
    assert set(noise_prior.study_prior(study)) == set(prior["metrics"])
    t = study.ask()  # a trial measured on another engine version drops the prior
    t.set_user_attr("engine_version", "0.33.0")
    study.tell(t, [1.0, 1.0, 1.0])
    assert noise_prior.study_prior(study) == {}


def test_an_export_says_where_its_noise_came_from():
    from autotune.ops.export import _prior_note, _prior_words

    study = optuna.create_study()
    assert _prior_note(study) is None
    study.set_user_attr("noise_prior", {"source": "the table", "created": "today", "engine_version": "x",
                                        "metrics": {"capacity_tps": {"sd": 0.1, "df": 30, "log": True}}})
    note = _prior_note(study)
    assert note == {"source": "the table", "created": "today", "df": {"capacity_tps": 30}}
    assert "launch noise measured by the table on today, 30 degrees of freedom" in _prior_words(note)


def test_a_bracket_open_above_bounds_capacity_and_is_no_spread():
    """A window whose search stopped before a failing level (max_rate, a quality floor) says capacity >= x: the
    noise pool leaves its capacity and cost out, and keeps its latency."""
    from autotune.search.config_points import ConfigPoint

    def trial(cap: float, bracket: float, p95: float):
        t = optuna.trial.create_trial(values=[p95, 1.0 / cap, 0.5], user_attrs={"metrics": {
            "capacity_tps": cap, "capacity_bracket": bracket, "usd_per_1k_tasks": 1.0 / cap,
            "p95_task_ms_at_load": p95}})
        return t

    cp = ConfigPoint("k", [trial(2.0, 1.1, 900.0), trial(4.0, math.inf, 950.0)])
    p = cp.point(["capacity_tps", "usd_per_1k_tasks", "p95_task_ms_at_load"], {}, all_windows=True)
    assert p.windows == {"capacity_tps": [2.0], "usd_per_1k_tasks": [0.5], "p95_task_ms_at_load": [900.0, 950.0]}
    assert cp.point(["capacity_tps"], {}).windows["capacity_tps"] == [2.0, 4.0], "the estimate keeps both"
