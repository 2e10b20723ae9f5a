"""The real path: vLLM CPU server on the bundled model, real Locust, one full trial in a temp MLflow store.

Needs `make setup` (engine env + prepared model). It fails, never skips, when they are missing: CI must
exercise the real engine on every submission.
"""

from __future__ import annotations

import json
from pathlib import Path

import psutil
import pytest

from autotune.models.registry import is_prepared
from autotune.study import SearchOptions, run_search
from tests.conftest import REPO
from tests.test_study import NullReporter

pytestmark = pytest.mark.engine
ENGINE_PY = REPO / ".venv-engine" / "bin" / "python"


def _engine_processes(port: str) -> list[psutil.Process]:
    found = []
    for p in psutil.process_iter(["cmdline"]):
        cmd = p.info["cmdline"] or []
        if "vllm.entrypoints.openai.api_server" in " ".join(cmd) and port in cmd:
            found.append(p)
    return found


def test_real_vllm_trial(tmp_path: Path, write):
    assert ENGINE_PY.exists(), "engine env missing: run `make setup`"
    assert is_prepared("smollm2-135m"), "bundled model not prepared: run `make setup`"
    write("wl.yaml", f"""\
        name: e2e
        dataset: {REPO / 'workloads/extraction/items.jsonl'}
        prompt:
          system: "Answer with one JSON object."
          template: "Article: {{article}}\\nGive name, email and address as JSON."
        arrival: {{mode: closed, users: 4}}
        warmup_s: 2
        duration_s: 8
        drain_timeout_s: 30
        max_tokens: 32
        """)
    space = write("space.yaml", f"""\
        name: e2e
        workload: wl.yaml
        engine: {{python: {ENGINE_PY}, startup_timeout_s: 400}}
        knobs:
          model: {{value: smollm2-135m}}
          kv_cache_space_gb: {{value: 1}}
          max_model_len: {{value: 512}}
          dtype: {{value: float32}}
          enforce_eager: {{value: true}}
          block_size: {{value: 32}}
          max_num_seqs: {{value: 4}}
          spec_method: {{value: ngram}}
          num_speculative_tokens: {{value: 2}}
          prompt_lookup_max: {{value: 3}}
        search: {{n_trials: 1, max_failures: 0}}
        """)
    opts = SearchOptions(space_file=space, run_dir=tmp_path / "runs")
    reporter = NullReporter()
    summary = run_search(opts, reporter)
    assert reporter.finished == [(0, None)], reporter.finished
    assert summary.trials_complete == 1

    trial_dir = tmp_path / "runs" / "e2e" / "trial-0000"
    argv = json.loads((trial_dir / "engine-argv.json").read_text())
    assert "--speculative-config" in argv and "--enforce-eager" in argv
    port = argv[argv.index("--port") + 1]
    assert _engine_processes(port) == [], "engine outlived its trial"
    assert not list((tmp_path / "runs" / "engines").glob("*.json"))

    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}")
    exp = client.get_experiment_by_name("e2e")
    runs = client.search_runs([exp.experiment_id], filter_string="tags.`autotune.role` = 'trial'")
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    m = runs[0].data.metrics
    assert m["p50_ttft_ms"] > 0 and m["p95_e2e_ms"] >= m["p50_ttft_ms"]
    assert m["mean_tpot_ms"] > 0 and m["p95_itl_ms"] > 0
    assert m["requests_ok"] >= 4 and m.get("requests_failed", 0) == 0
    assert m["output_tokens_per_s"] > 0 and m["output_tokens_per_request"] > 0
    assert m["server_ttft_mean_ms"] > 0 and m["server_generation_tokens"] > 0
    assert m["spec_draft_tokens"] > 0  # ngram speculative decoding really ran
    assert 0.0 <= m["quality"] <= 1.0 and m["usd_per_1k_requests"] > 0
    assert 0 < m["startup_s"] < 400 and m["loadgen_cpu_s"] > 0
    # client and server agree on the tokens generated in the window (within in-flight slack)
    assert abs(m["server_generation_tokens"] - m["output_tokens_per_s"] * m["measure_s"]) < 32 * 8
    arts = {a.path for a in client.list_artifacts(runs[0].info.run_id)}
    assert {"engine.log", "requests.jsonl", "metrics-deltas.json", "resolved-config.json"} <= arts
