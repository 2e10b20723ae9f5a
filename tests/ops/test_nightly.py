"""`autotune nightly` on a fake-engine study: interleaved baseline/current windows on fresh engines; an unchanged
setup passes twice, a forced bad engine setting fails with the metric, the values and the confidence, and a
forced setting whose engine cannot start fails on its failed windows with their reason."""

from __future__ import annotations

import json

from autotune.ops.nightly import parse_forced
from autotune.search.study import run_search
from tests.conftest import cli_invoke
from tests.stand_in import NullReporter, _study


def test_forced_values_are_checked():
    assert parse_forced(["max_num_seqs=1", "enforce_eager=true", "output_format=yaml"]) == {
        "max_num_seqs": 1, "enforce_eager": True, "output_format": "yaml"}
    res = cli_invoke(["nightly", "--study", "s", "--force", "max_num_seqs=0"])
    assert res.exit_code == 2 and "max_num_seqs: must be >= 1" in res.output
    res = cli_invoke(["nightly", "--study", "s", "--confirm", "1"])
    assert res.exit_code == 2 and "--confirm" in res.output, "one window per arm is no test"


def _short_windows(opts) -> None:
    """1-s windows after the search: a night measures 2K of them."""
    wl = opts.space_file.parent / "wl.yaml"
    wl.write_text(wl.read_text().replace("duration_s: 2", "duration_s: 1"))


def _common(opts, tmp_path, confirm: int) -> list[str]:
    return ["--study", "s", "--run-dir", str(opts.run_dir), "--exports", str(tmp_path / "exports"),
            "--reports", str(tmp_path / "nightly"), "--confirm", str(confirm),
            "--latency-tolerance", "1.0"]  # ms-scale fake latencies jitter on a busy box; the forced case is 10x


def test_nightly_twice_ok_then_a_forced_regression_fails(setup, tmp_path):
    opts = setup("{choices: [4, 8]}", n_trials=2, faults="1:slow")  # the forced max_num_seqs=1 streams slowly
    run_search(opts, NullReporter())
    _short_windows(opts)
    before = len(_study(opts).trials)
    first = cli_invoke(["nightly", *_common(opts, tmp_path, 2), "--new-trials", "1"])
    assert first.exit_code == 0, first.output
    assert "warning: 2 windows per arm cannot detect a regression" in first.stderr, "K=2 can never reach alpha"
    assert (tmp_path / "exports" / "s" / "v1" / "bundle.json").is_file(), "first night exports the recommendation"
    second = cli_invoke(["nightly", *_common(opts, tmp_path, 2), "--new-trials", "0"])
    assert second.exit_code == 0, second.output
    after = len(_study(opts).trials)
    assert after > before, "the first night searched on"
    report = json.loads(sorted((tmp_path / "nightly" / "s").glob("*.json"))[-1].read_text())
    assert [w["run"] for w in report["windows"]["baseline"]] == ["baseline-0", "baseline-1"]
    assert all(w["ok"] and w["values"]["p95_task_ms"] > 0 for ws in report["windows"].values() for w in ws)
    night = sorted(opts.run_dir.glob("s/nightly-*"))[-1]
    assert sorted(p.name for p in night.iterdir()) == ["baseline-0", "baseline-1", "current-0", "current-1"]

    bad = cli_invoke(["nightly", *_common(opts, tmp_path, 4), "--new-trials", "0", "--force", "max_num_seqs=1"])
    assert bad.exit_code == 5, bad.output
    assert "warning" not in bad.stderr, "4 windows per arm can reach alpha over 3 metrics"
    assert "regression:" in bad.output and "p95_task_ms:" in bad.output and "confidence" in bad.output
    reports = sorted((tmp_path / "nightly" / "s").glob("*.json"))
    assert len(reports) == 3
    verdicts = [json.loads(p.read_text())["verdict"] for p in reports]
    assert verdicts.count("REGRESSION") == 1 and len(_study(opts).trials) == after, "--new-trials 0"
    last = json.loads(reports[-1].read_text())
    assert last["forced"] == {"max_num_seqs": 1} and last["windows_per_arm"] == 4
    lat = next(c for c in last["comparisons"] if c["metric"] == "p95_task_ms")
    base = [w["values"]["p95_task_ms"] for w in last["windows"]["baseline"]]
    cur = [w["values"]["p95_task_ms"] for w in last["windows"]["current"]]
    assert min(cur) > max(base), "10x slower in every window"
    assert lat["regressed"] and lat["p_value"] == 1 / 70, "exact: the one arrangement of 8 windows out of C(8,4)"
    assert lat["p_adjusted"] <= 0.05 and lat["test"] == "permutation test over 4+4 windows"
    assert lat["n_baseline"] == lat["n_current"] == 4


def test_a_current_config_that_cannot_start_is_a_regression_naming_the_reason(setup, tmp_path):
    opts = setup("{value: 4}", n_trials=1, faults="13:unsupported")
    run_search(opts, NullReporter())
    _short_windows(opts)
    res = cli_invoke(["nightly", *_common(opts, tmp_path, 2), "--new-trials", "0", "--force", "max_num_seqs=13"])
    assert res.exit_code == 5, res.output
    assert "regression: failed_windows: 0/2 -> 2/2" in res.stderr and "current: unsupported x2" in res.stderr
    report = json.loads(next((tmp_path / "nightly" / "s").glob("*.json")).read_text())
    assert report["failed_windows"] == {"baseline": [], "current": ["current-0", "current-1"]}
    assert all(w["failure"].startswith("unsupported: ") for w in report["windows"]["current"])
    assert "p95_task_ms" in report["untested"], "no measured current window holds it"
