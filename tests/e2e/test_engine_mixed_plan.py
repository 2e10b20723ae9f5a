"""The real path of a mixed plan: the agents on the trial's own vLLM, the judge on a second local vLLM reached as an
API (`kind: openai`, behind a key, priced per token): hybrid hosting in one trial, on real engines.

Needs `make setup`. It fails, never skips, when the engine env or the model is missing.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from autotune.config import EngineConfig, ServerConfig
from autotune.engines import EngineRegistry, VLLMEngine
from autotune.models.registry import is_prepared
from autotune.search.study import SearchOptions, run_search
from tests.conftest import REPO
from tests.stand_in import REAL_ENGINE_KNOBS, REAL_EXTRACTION, NullReporter, _study

pytestmark = pytest.mark.engine
ENGINE_PY = REPO / ".venv-engine" / "bin" / "python"
KEY = "sk-mixed-plan-e2e-0123456789"


def test_a_judge_on_a_second_local_vllm_played_as_an_api(tmp_path: Path, write, monkeypatch):
    assert ENGINE_PY.exists() and is_prepared("smollm2-135m"), "run `make setup`"
    api_engine = VLLMEngine(EngineConfig(python=str(ENGINE_PY), startup_timeout_s=400, env={"VLLM_API_KEY": KEY}),
                            EngineRegistry(tmp_path / "api-engines"))
    api = api_engine.launch(ServerConfig(model="smollm2-135m", dtype="float32", enforce_eager=True, block_size=32,
                                         max_model_len=512, max_num_seqs=4, kv_cache_space_gb=1,
                                         cpu_threads_bind="1", cpu_reserved_cores=0), tmp_path / "api-engine.log")
    try:
        monkeypatch.setenv("MIXED_API_KEY", KEY)
        write("wl.yaml", REAL_EXTRACTION + """\
        arrival: {mode: closed, users: 2}
        warmup_s: 1
        duration_s: 6
        drain_timeout_s: 40
        max_tokens: 24
        eval_items: 6
""")
        space = write("space.yaml", f"""\
        name: e2e
        workload: wl.yaml
        engine: {{python: {ENGINE_PY}, startup_timeout_s: 400}}
        endpoints:
          api: {{kind: openai, url: "{api.url}/v1", model: smollm2-135m, api_key_env: MIXED_API_KEY,
                 usd_per_1m_input: 0.1, usd_per_1m_output: 0.4}}
        knobs:
""" + REAL_ENGINE_KNOBS + """\
          max_num_seqs: {value: 4}
          cpu_threads_bind: {value: "0"}
          cpu_reserved_cores: {value: 0}
          architecture: {value: judge}
          judge_rounds: {value: 1}
          route_judge: {value: api}
        sla: {task_ms: 30000}
        search: {n_trials: 1, max_failures: 0, noise_repeats: 0}
""")
        opts = SearchOptions(space_file=space, run_dir=tmp_path / "runs")
        run_search(opts, NullReporter())
        trial = _study(opts, "e2e").trials[0]
        assert trial.state.name == "COMPLETE", trial.user_attrs.get("fail_message")
        records = [json.loads(line) for line in
                   (tmp_path / "runs" / "e2e" / "trial-0000" / "requests.jsonl").read_text().splitlines()]
        where = {(r["node"].split(".")[1], r["endpoint"]) for r in records if r.get("ok")}
        assert where == {("agent_a", "engine"), ("agent_b", "engine"), ("judge", "api")}, where
        m = trial.user_attrs["metrics"]
        assert m["usd_per_1k_tasks_hosted"] > 0 and m["usd_per_1k_tasks_api"] > 0
        assert KEY not in (tmp_path / "runs" / "e2e" / "trial-0000" / "load" / "load-config.json").read_text()
        # the tuner stops what it started, never the API
        assert httpx.get(f"{api.url}/health", timeout=10).status_code == 200
    finally:
        api_engine.stop(api)
