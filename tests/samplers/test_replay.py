"""benchmarks/replay_samplers.py mechanics on a tiny synthetic table (2 x 2 x 2 configs): the lookup draws only
recorded repeats, hypervolume reaches 1 exactly when the true front is measured, re-proposals are not counted,
a failed row is told FAIL. No timing."""

from __future__ import annotations

import csv
import itertools

import optuna
import pytest

from autotune.config.space import load_space
from tests.conftest import load_benchmark

rs = load_benchmark("replay_samplers")

SPACE = """\
name: tiny
engine: {python: /bin/sh}
knobs:
  quantization: {choices: [none, w8a8]}
  max_num_seqs: {choices: [4, 16]}
  output_format: {choices: [json, yaml]}
  block_size: {value: 32}
objectives:
  - {metric: p95_task_ms_at_load, direction: minimize}
  - {metric: usd_per_1k_tasks, direction: minimize}
  - {metric: quality, direction: maximize}
constraints:
  - {metric: task_error_rate, op: "<=", value: 0.02}
"""
CONFIGS = [dict(zip(("quantization", "max_num_seqs", "output_format"), c, strict=True))
           for c in itertools.product(["none", "w8a8"], [4, 16], ["json", "yaml"])]
FRONT = [rs.key_of(CONFIGS[0]), rs.key_of(CONFIGS[1])]  # fast and cheap / slow, dear and good: both optimal
INFEASIBLE = rs.key_of(CONFIGS[2])  # dominates everything, but breaks the error-rate constraint
FAILING = rs.key_of(CONFIGS[3])


def truth_metrics(i: int) -> dict[str, float]:
    if i == 0:
        return {"p95_task_ms_at_load": 100.0, "usd_per_1k_tasks": 1.0, "quality": 0.5, "task_error_rate": 0.0}
    if i == 1:
        return {"p95_task_ms_at_load": 200.0, "usd_per_1k_tasks": 2.0, "quality": 0.9, "task_error_rate": 0.0}
    if i == 2:
        return {"p95_task_ms_at_load": 50.0, "usd_per_1k_tasks": 0.5, "quality": 1.0, "task_error_rate": 0.5}
    return {"p95_task_ms_at_load": 300.0 + 10 * i, "usd_per_1k_tasks": 3.0 + i, "quality": 0.4 - 0.01 * i,
            "task_error_rate": 0.0}  # dominated by config 0 and 1


def write_table(tmp_path, noise: bool, skip: int | None = None, fail: int | None = None,
                quality: dict[int, list[float]] | None = None):
    """A table of CONFIGS: 3 repeats each (distinct values when `noise`); `fail`: that config only fails;
    `quality`: a config's quality per repeat."""
    rows = []
    for r, (i, cfg) in itertools.product(range(3), enumerate(CONFIGS)):
        if i == skip:
            continue
        row = {"repeat": r + 1, "trial": i, "state": "COMPLETE", "feasible": True, "fail_reason": "", **cfg}
        if i == fail:
            row.update(state="FAIL", fail_reason="engine_launch")
        else:
            row.update({k: v * (1 + 0.1 * r) if noise and k != "task_error_rate" else v
                        for k, v in truth_metrics(i).items()})
            row.update({"quality": quality[i][r]} if i in (quality or {}) else {})
        rows.append({**row, "item_scores": "{}"})
    rows.append({"repeat": 4, "trial": 99, "state": "RUNNING", **CONFIGS[0]})  # a partial export's running trial
    path = tmp_path / "table.csv"
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(dict.fromkeys(k for row in rows for k in row)))
        w.writeheader()
        w.writerows(rows)
    space_file = tmp_path / "space.yaml"
    space_file.write_text(SPACE)
    space = load_space(space_file, check_paths=False)
    return rs.load_table(path, space), space


def test_lookup_draws_only_recorded_repeats_and_all_of_them(tmp_path):
    table, space = write_table(tmp_path, noise=True)
    assert table.skipped == 1 and all(len(reps) == 3 for reps in table.rows.values())
    recorded = {k: [m for _, m in reps] for k, reps in table.rows.items()}
    drawn = [table.measure(FRONT[0], seed, k)[1] for seed in range(5) for k in range(20)]
    assert all(m in recorded[FRONT[0]] for m in drawn)
    assert all(any(m == r for m in drawn) for r in recorded[FRONT[0]])  # uniform over repeats, not the first
    for seed in range(3):
        rep = rs.replay(table, space, "random", seed, budget=8, batch=1, n_trials=8)
        for key, _, metrics in rep.log:
            assert metrics in recorded[key]
        told = [t for t in rep.study.trials if "duplicate_of" not in t.user_attrs]
        for t, (key, _, metrics) in zip(told, rep.log, strict=True):  # the sampler was told the drawn repeat
            assert rs.key_of(t.params) == key
            assert t.values == rs.evaluate(metrics, space.objectives, space.constraints).values


def test_hv_is_one_exactly_when_the_true_front_is_measured(tmp_path):
    table, space = write_table(tmp_path, noise=False)
    truth = rs.Truth(table, space)
    assert INFEASIBLE not in truth.norm and truth.n_feasible == 7
    assert truth.fraction(FRONT) == pytest.approx(1.0)
    assert truth.fraction(FRONT[:1]) < 0.9 and truth.fraction([INFEASIBLE]) == 0.0
    for seed in range(4):
        rep = rs.replay(table, space, "random", seed, budget=8, batch=2, n_trials=8)
        rs.score(rep, truth, space, budget=8)
        assert len(rep.hv) == 8 and rep.hv[0] < 1.0 and rep.hv[-1] == pytest.approx(1.0)
        for n in range(1, 9):
            found = set(FRONT) <= {k for k, _, _ in rep.log[:n]}
            assert (rep.hv[n - 1] == pytest.approx(1.0)) == found, (seed, n, rep.hv)
            assert rep.hv[n - 1] <= rep.hv_optimistic[n - 1] + 1e-12


def test_the_result_is_the_observed_front_at_true_values(tmp_path):
    # config 1 is on the true front (mean quality 0.9), but its 0.4 repeat is dominated by config 0's observation
    table, space = write_table(tmp_path, noise=False, quality={1: [1.4, 0.4, 0.9]})
    truth = rs.Truth(table, space)
    unlucky = set()
    for seed in range(8):
        rep = rs.replay(table, space, "random", seed, budget=8, batch=1, n_trials=8)
        rs.score(rep, truth, space, budget=8)
        q = next(m["quality"] for k, _, m in rep.log if k == FRONT[1])
        unlucky.add(q == 0.4)
        assert rep.hv_optimistic[-1] == pytest.approx(1.0)  # every config measured, at its true mean
        assert (rep.hv[-1] < 0.99) if q == 0.4 else (rep.hv[-1] == pytest.approx(1.0)), (seed, q, rep.hv[-1])
    assert unlucky == {True, False}  # both cases occurred, or this test checks less than it claims


def test_re_proposals_are_told_the_estimate_and_not_counted(tmp_path):
    table, space = write_table(tmp_path, noise=True)
    rep = rs.replay(table, space, "random", 1, budget=8, batch=1, n_trials=8)
    assert rep.re_proposals > 0  # or this test checks nothing
    assert len(rep.log) == 8 and len({k for k, _, _ in rep.log}) == 8  # each config measured once
    dups = [t for t in rep.study.trials if "duplicate_of" in t.user_attrs]
    assert len(dups) == rep.re_proposals and len(rep.study.trials) == 8 + rep.re_proposals
    for t in dups:
        first = rep.study.trials[t.user_attrs["duplicate_of"]]
        assert rs.key_of(t.params) == rs.key_of(first.params) and t.values == first.values
    drawn = [t.number for t in rep.study.trials if t.user_attrs.get("drawn") == "unmeasured"]
    assert drawn  # REPEAT_STREAK re-proposals in a row: an unmeasured config is measured next
    for n in drawn:
        assert "duplicate_of" not in rep.study.trials[n].user_attrs
        assert all("duplicate_of" in t.user_attrs for t in rep.study.trials[n - rs.REPEAT_STREAK:n])


def test_failed_rows_are_told_fail_and_counted(tmp_path):
    table, space = write_table(tmp_path, noise=True, fail=3)
    assert FAILING not in rs.Truth(table, space).norm
    rep = rs.replay(table, space, "random", 1, budget=10, batch=1, n_trials=10)
    fails = [t for t in rep.study.trials if rs.key_of(t.params) == FAILING]
    assert fails and all(t.state == optuna.trial.TrialState.FAIL for t in fails)
    assert sum(s == "FAIL" for _, s, _ in rep.log) == len(fails)  # measured again, and counted, each time


def test_a_config_missing_from_the_table_is_a_clear_error(tmp_path):
    table, space = write_table(tmp_path, noise=False, skip=5)
    with pytest.raises(LookupError, match="not in the table"):
        rs.replay(table, space, "random", 0, budget=8, batch=1, n_trials=8)


def test_cli_writes_the_report(tmp_path, capsys):
    write_table(tmp_path, noise=True)
    out = tmp_path / "out"
    rs.main(["--table", str(tmp_path / "table.csv"), "--space", str(tmp_path / "space.yaml"), "--samplers",
             "default", "random", "--seeds", "3", "--budget", "4", "--out", str(out)])
    md = (out / "sample_efficiency.md").read_text()
    assert "| random |" in md and "| default (" in md and "Mann-Whitney" in md and "grid 8 configs" in md
    assert md in capsys.readouterr().out
    with (out / "sample_efficiency.csv").open() as f:
        assert len(list(csv.DictReader(f))) == 2 * 3 * 4
    assert (out / "sample_efficiency.png").stat().st_size > 0
