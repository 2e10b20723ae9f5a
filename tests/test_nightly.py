"""`autotune nightly` on a fake-engine study: unchanged setup passes twice, a forced bad engine setting fails
with the metric, the values and the confidence."""

from __future__ import annotations

import json

import pytest

from autotune.nightly import compare, parse_forced
from autotune.study import run_search
from tests.conftest import cli_invoke
from tests.test_study import NullReporter, _study
from tests.test_study import setup as setup  # noqa: F401 (the fixture)


def test_compare_needs_significance_and_size():
    base = [{"latency_s": 1.0 + 0.01 * i, "score": 1.0} for i in range(50)]
    same = [{"latency_s": 1.005 + 0.01 * i, "score": 1.0} for i in range(50)]
    slow = [{"latency_s": 2.0 + 0.01 * i, "score": 1.0} for i in range(50)]
    worse = [{"latency_s": 1.0 + 0.01 * i, "score": 0.0 if i % 2 else 1.0} for i in range(50)]
    assert not any(c.regressed for c in compare(base, same, 0.05, 0.25, 0.05))
    lat = compare(base, slow, 0.05, 0.25, 0.05)[0]
    assert lat.regressed and lat.metric == "p95_task_ms" and lat.p_value < 1e-6
    assert lat.change == pytest.approx(1000 / 1465.5)
    q = compare(base, worse, 0.05, 0.25, 0.05)[1]
    assert q.regressed and q.metric == "quality" and q.change == -0.5


def test_forced_values_are_checked():
    assert parse_forced(["max_num_seqs=1", "enforce_eager=true", "output_format=yaml"]) == {
        "max_num_seqs": 1, "enforce_eager": True, "output_format": "yaml"}
    res = cli_invoke(["nightly", "--study", "s", "--force", "max_num_seqs=0"])
    assert res.exit_code == 2 and "max_num_seqs: must be >= 1" in res.output


def test_nightly_twice_ok_then_a_forced_regression_fails(setup, tmp_path):
    opts = setup("{choices: [4, 8]}", n_trials=2)
    run_search(opts, NullReporter())
    common = ["--study", "s", "--run-dir", str(opts.run_dir), "--exports", str(tmp_path / "exports"),
              "--reports", str(tmp_path / "nightly"), "--confirm", "2",
              "--latency-tolerance", "1.0"]  # ms-scale fake latencies jitter on a busy box; the forced case is 10x
    first = cli_invoke(["nightly", *common, "--new-trials", "1"])
    assert first.exit_code == 0, first.output
    assert (tmp_path / "exports" / "s" / "v1" / "bundle.json").is_file(), "first night exports the recommendation"
    second = cli_invoke(["nightly", *common, "--new-trials", "0"])
    assert second.exit_code == 0, second.output
    assert len(_study(opts).trials) == 3

    bad = cli_invoke(["nightly", *common, "--new-trials", "0", "--force", "max_num_seqs=1"])
    assert bad.exit_code == 5, bad.output
    assert "regression:" in bad.output and "p95_task_ms:" in bad.output and "confidence" in bad.output
    reports = sorted((tmp_path / "nightly" / "s").glob("*.json"))
    assert len(reports) == 3
    verdicts = [json.loads(p.read_text())["verdict"] for p in reports]
    assert verdicts.count("REGRESSION") == 1 and json.loads(reports[-1].read_text())["forced"] == {"max_num_seqs": 1}
