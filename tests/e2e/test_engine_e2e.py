"""The real path: vLLM CPU server on the bundled model, real Locust, one full trial in a temp MLflow store.

Needs `make setup` (engine env + prepared model). It fails, never skips, when they are missing: CI must
exercise the real engine on every submission.
"""

from __future__ import annotations

import json
from pathlib import Path

import psutil
import pytest

from autotune.engines.process import group_alive
from autotune.models.registry import is_prepared
from autotune.search.study import SearchOptions, run_search
from tests.conftest import REPO
from tests.stand_in import REAL_ENGINE_KNOBS, REAL_EXTRACTION, NullReporter

pytestmark = pytest.mark.engine
ENGINE_PY = REPO / ".venv-engine" / "bin" / "python"


def _engine_processes(port: str) -> list[psutil.Process]:
    found = []
    for p in psutil.process_iter(["cmdline"]):
        cmd = p.info["cmdline"] or []
        if "vllm.entrypoints.openai.api_server" in " ".join(cmd) and port in cmd:
            found.append(p)
    return found


def test_real_vllm_architectures_and_formats(tmp_path: Path, write):
    """One real engine serves five trials that differ only in client knobs: all four architectures, four output
    formats, and one regex-constrained trial; the engine is launched once and never outlives the search."""
    assert ENGINE_PY.exists(), "engine env missing: run `make setup`"
    assert is_prepared("smollm2-135m"), "bundled model not prepared: run `make setup`"
    write("wl.yaml", REAL_EXTRACTION + """\
        arrival: {mode: closed, users: 3}
        warmup_s: 1
        duration_s: 6
        drain_timeout_s: 40
        max_tokens: 32
        eval_items: 12
        """)
    enqueue = [
        {"architecture": "one_call", "output_format": "json", "constrained": "none"},
        {"architecture": "parallel", "output_format": "yaml", "constrained": "none"},
        {"architecture": "sequential", "output_format": "xml", "constrained": "none"},
        {"architecture": "judge", "output_format": "minimal", "constrained": "none"},
        {"architecture": "one_call", "output_format": "yaml", "constrained": "regex"},
    ]
    space = write("space.yaml", f"""\
        name: e2e
        workload: wl.yaml
        engine: {{python: {ENGINE_PY}, startup_timeout_s: 400}}
        knobs:
""" + REAL_ENGINE_KNOBS + f"""\
          max_num_seqs: {{value: 8}}
          spec_method: {{value: ngram}}
          num_speculative_tokens: {{value: 2}}
          prompt_lookup_max: {{value: 3}}
          architecture: {{choices: [one_call, parallel, sequential, judge]}}
          output_format: {{choices: [json, yaml, xml, minimal]}}
          constrained: {{choices: [none, regex]}}
          judge_rounds: {{value: 1}}
        sla: {{task_ms: 20000}}
        search: {{n_trials: 5, max_failures: 0, noise_repeats: 0, enqueue: {json.dumps(enqueue)}}}
        """)
    opts = SearchOptions(space_file=space, run_dir=tmp_path / "runs")
    reporter = NullReporter()
    summary = run_search(opts, reporter)
    assert reporter.finished == [(i, None) for i in range(5)], reporter.finished
    assert summary.trials_complete == 5

    argv = json.loads((tmp_path / "runs" / "e2e" / "trial-0000" / "engine-argv.json").read_text())
    assert "--speculative-config" in argv and "--enforce-eager" in argv
    port = argv[argv.index("--port") + 1]
    assert _engine_processes(port) == [], "engine outlived the search"
    assert not list((tmp_path / "runs" / "engines").glob("*.json"))

    client = _check_trial_runs(tmp_path, enqueue)
    _check_export_serves(tmp_path, client)


def _check_trial_runs(tmp_path: Path, enqueue: list[dict[str, str]]):
    """Every trial's MLflow run: its knobs, metrics and artifacts, the shared evaluation set, one launch for all,
    and the architectures' shape in the measurements. Returns the MLflow client."""
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}")
    exp = client.get_experiment_by_name("e2e")
    runs = client.search_runs([exp.experiment_id], filter_string="tags.`autotune.role` = 'trial'",
                              order_by=["attributes.start_time ASC"])
    assert len(runs) == 5 and all(r.info.status == "FINISHED" for r in runs)
    by_arch = {}
    for r, want in zip(runs, enqueue, strict=True):
        p, m = r.data.params, r.data.metrics
        assert {k: p[k] for k in want} == want
        by_arch.setdefault(p["architecture"], m)
        assert m["tasks_ok"] >= 1 and m["p95_task_ms"] > 0 and m["task_error_rate"] == 0
        assert m["p50_ttft_ms"] > 0 and m["mean_tpot_ms"] > 0 and m["requests_failed"] == 0
        assert 0.0 <= m["quality"] <= 1.0 and 0.0 <= m["validity_rate"] <= 1.0 and m["usd_per_1k_tasks"] > 0
        assert m["input_tokens_per_task"] > 0 and m["output_tokens_per_task"] > 0
        assert r.data.tags["autotune.dominant_node"]
        arts = {a.path for a in client.list_artifacts(r.info.run_id)}
        assert {"engine.log", "tasks.jsonl", "requests.jsonl", "node_breakdown.json", "node_breakdown.md",
                "item_scores.jsonl"} <= arts
        assert m["eval_items"] == 12 and m["eval_missing_items"] == 0
        assert m["quality_ci_low"] <= m["quality"] <= m["quality_ci_high"]
    graded = [[json.loads(x)["id"] for x in (tmp_path / "runs" / "e2e" / f"trial-{n:04d}" / "item_scores.jsonl")
               .read_text().splitlines()] for n in range(5)]
    assert all(ids == graded[0] for ids in graded) and len(graded[0]) == 12, "every config graded on the same items"
    assert runs[0].data.metrics["startup_s"] > 0 and runs[0].data.metrics["engine_reused"] == 0
    assert all(r.data.metrics["engine_reused"] == 1 for r in runs[1:]), "client-only changes must not relaunch"
    assert runs[0].data.metrics["spec_draft_tokens"] > 0  # ngram speculative decoding really ran
    # the architectures' shape shows in the measurements
    assert by_arch["one_call"]["fm_calls_per_task"] == 1
    assert by_arch["parallel"]["fm_calls_per_task"] == 2 and by_arch["sequential"]["fm_calls_per_task"] == 2
    assert by_arch["judge"]["fm_calls_per_task"] == 3
    assert by_arch["sequential"]["mean_task_ms"] > by_arch["parallel"]["mean_task_ms"]
    # the regex constraint really constrains: every reply is well-formed YAML unless cut off by max_tokens
    constrained = runs[4].data.metrics
    assert constrained["validity_rate"] >= 1.0 - constrained["truncated_rate"] - 1e-9
    return client


def _check_export_serves(tmp_path: Path, client) -> None:
    """The recommended config exports to a bundle whose numbers are its run's and whose serve.sh starts the real
    engine."""
    import os
    import signal
    import subprocess
    import time

    import httpx
    import optuna

    from autotune.ops.export import export_bundle

    study = optuna.load_study(study_name="e2e", storage=f"sqlite:///{tmp_path / 'runs' / 'optuna.db'}")
    bundle, chosen, _ = export_bundle(study, "knee", tmp_path / "exports")
    exported = json.loads((bundle / "bundle.json").read_text())
    assert exported["metrics"] == chosen.metrics
    logged = client.get_run(exported["mlflow_run_id"]).data.metrics  # the bundle's numbers are the run's numbers
    for key in ("p95_task_ms", "quality", "tasks_per_s", "usd_per_1k_tasks"):
        assert logged[key] == pytest.approx(exported["metrics"][key])
    proc = subprocess.Popen([str(bundle / "serve.sh")], env={**os.environ, "PORT": "18999"}, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            assert proc.poll() is None, "serve.sh exited before the engine was healthy"
            try:
                if httpx.get("http://127.0.0.1:18999/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(1)
        else:
            raise AssertionError("the exported engine never became healthy")
        models = httpx.get("http://127.0.0.1:18999/v1/models", timeout=5).json()
        assert models["data"][0]["id"] == "smollm2-135m"
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)


def _one_trial_space(write, name: str, workload: str, knobs: str = "", space: str = "") -> Path:
    """One trial of the bundled model on a small fp32 eager engine, asked one field: the real-engine fault and
    capacity tests differ only in the load and the extra lines given here (already indented)."""
    write("wl.yaml", f"""\
        name: {name}
        dataset: {REPO / 'workloads/extraction/items.jsonl'}
        fields: [{{name: email, question: "What is the main person's e-mail address?"}}]
        prompt: {{context: "Article: {{article}}", task: "Give the main person's e-mail address."}}
        max_tokens: 24
        eval_items: 12
""" + workload)
    return write("space.yaml", f"""\
        name: {name}
        workload: wl.yaml
        engine: {{python: {ENGINE_PY}, startup_timeout_s: 400}}
        knobs:
""" + REAL_ENGINE_KNOBS + """\
          max_num_seqs: {value: 4}
""" + knobs.rstrip(" ") + space.rstrip(" ") + """\
        search: {n_trials: 1, max_failures: 0}
        """)


def test_real_engine_frozen_mid_window_is_engine_hung(tmp_path: Path, write):
    """SIGSTOP on the real vLLM process group (API server and engine core) mid-window: a FAILED `engine_hung`
    trial within the stall timeout plus teardown, and no vLLM process survives."""
    from tests.stand_in import Freezer

    assert ENGINE_PY.exists(), "engine env missing: run `make setup`"
    space = _one_trial_space(write, "hang", workload="""\
        arrival: {mode: closed, users: 2}
        warmup_s: 1
        duration_s: 40
        drain_timeout_s: 40
        stall_timeout_s: 5
        """)
    opts = SearchOptions(space_file=space, run_dir=tmp_path / "runs")
    reporter = Freezer(opts.run_dir, after_s=2.0)
    summary = run_search(opts, reporter)
    assert reporter.frozen_at is not None and reporter.finished_at is not None
    detect = reporter.finished_at - reporter.frozen_at
    print(f"real engine: SIGSTOP -> trial FAILED engine_hung in {detect:.1f} s (stall_timeout_s 5)")
    assert summary.trials_failed == 1
    import optuna

    study = optuna.load_study(study_name="hang", storage=f"sqlite:///{tmp_path / 'runs' / 'optuna.db'}")
    assert study.trials[0].user_attrs["fail_reason"] == "engine_hung"
    assert detect < 5 + 15
    argv = json.loads((tmp_path / "runs" / "hang" / "trial-0000" / "engine-argv.json").read_text())
    assert _engine_processes(argv[argv.index("--port") + 1]) == [], "a frozen engine outlived its trial"
    assert not group_alive(reporter.pgid), "a process of the frozen group (the engine core) outlived its trial"
    assert not list((tmp_path / "runs" / "engines").glob("*.json"))


def test_real_engine_capacity_search_brackets_and_sizes_the_export(tmp_path: Path, write):
    """One short capacity search on the real engine: the levels bracket a boundary (a passing and a failing
    level), and the export sizes replicas from the capacity, not from a fixed-load goodput."""
    import math

    import optuna

    from autotune.ops.export import export_bundle

    assert ENGINE_PY.exists(), "engine env missing: run `make setup`"
    space = _one_trial_space(write, "cap", workload="""\
        load_protocol: capacity
        capacity: {start_rate: 0.5, tolerance: 0.5, max_levels: 6, level_s: 8, warmup_s: 1, min_tasks: 10}
        """, knobs="""\
          architecture: {value: one_call}
          output_format: {value: minimal}
        """, space="""\
        objectives:
          - {metric: p95_task_ms_at_load, direction: minimize}
          - {metric: usd_per_1k_tasks, direction: minimize}
        sla: {task_ms: 3000, attainment: 0.9}
        """)
    opts = SearchOptions(space_file=space, run_dir=tmp_path / "runs")
    summary = run_search(opts, NullReporter())
    assert summary.trials_complete == 1
    rows = json.loads((tmp_path / "runs" / "cap" / "trial-0000" / "capacity_levels.json").read_text())
    print("real engine levels:", [(r["rate"], r["passed"], round(r["attainment"], 2), r["early_stop"]) for r in rows])
    assert any(r["passed"] for r in rows) and any(not r["passed"] for r in rows), rows
    study = optuna.load_study(study_name="cap", storage=f"sqlite:///{tmp_path / 'runs' / 'optuna.db'}")
    m = study.trials[0].user_attrs["metrics"]
    assert m["capacity_tps"] > 0 and all(r["prefix_cache_reset"] for r in rows)
    assert m["capacity_low"] == m["capacity_tps"] < m["capacity_high"] and m["capacity_resolved"] in (0.0, 1.0)
    # the noise window (search.noise_repeats 1): the same config again on a freshly launched engine, merged
    [window] = study.user_attrs["noise"][study.trials[0].user_attrs["config_key"]]
    assert not window.get("failed") and window["fresh_engine"] and window["metrics"]["capacity_tps"] > 0, window
    capacity = math.sqrt(m["capacity_tps"] * window["metrics"]["capacity_tps"])  # the point's estimate
    bundle, _, _ = export_bundle(study, "knee", tmp_path / "exports", target_rate=10.0, headroom=0.8)
    exported = json.loads((bundle / "bundle.json").read_text())
    assert exported["metrics"]["capacity_tps"] == pytest.approx(capacity)
    assert exported["replicas"] == math.ceil(10.0 / (capacity * 0.8) - 1e-9)
    assert (bundle / "latency_load.png").is_file() and "Capacity at SLA" in (bundle / "README.md").read_text()
