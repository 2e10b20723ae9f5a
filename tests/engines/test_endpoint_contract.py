"""One contract every endpoint kind passes: start and health, a streamed call with usage, stop, cost, bundle.

Kinds: `vllm` (a process the keeper launches: here the stand-in engine) and `openai` (an API the tuner only calls:
here the stand-in engine started apart, demanding a key, as a hosted API does). Adding a kind adds a case here.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import yaml

from autotune.config import ClientConfig, ServerConfig, SpaceConfig, TrialConfig
from autotune.config.endpoints import EngineConfig, OpenAIEndpointConfig
from autotune.engines import EngineRegistry, endpoint_key, group_alive, keeper_for
from autotune.ops.export import deploy_files
from autotune.search.trial import task_cost
from tests.stand_in import HERE

KEY = "sk-contract-test-0123456789"


@dataclass
class Case:
    kind: str
    engine: Any  # the space's `engine:` block
    keeper: Any
    server: ServerConfig


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(params=["vllm", "openai"])
def case(request, tmp_path, monkeypatch):
    server = ServerConfig(model=str(tmp_path), max_num_seqs=4)
    if request.param == "vllm":
        engine = EngineConfig(command=[sys.executable, str(HERE / "fake_engine.py")], startup_timeout_s=10,
                              shutdown_timeout_s=3)
        keeper = keeper_for(engine, EngineRegistry(tmp_path / "engines"))
        yield Case("vllm", engine, keeper, server)
        keeper.close_all()
        return
    port = _free_port()
    api = subprocess.Popen([sys.executable, str(HERE / "fake_engine.py"), "--port", str(port), "--served-model-name",
                            "api-model"], env={**os.environ, "VLLM_API_KEY": KEY}, start_new_session=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    monkeypatch.setenv("CONTRACT_API_KEY", KEY)
    engine = OpenAIEndpointConfig(kind="openai", url=f"http://127.0.0.1:{port}/v1", model="api-model",
                                  api_key_env="CONTRACT_API_KEY", usd_per_1m_input=0.5, usd_per_1m_output=1.5,
                                  startup_timeout_s=10)
    try:
        yield Case("openai", engine, keeper_for(engine, EngineRegistry(tmp_path / "engines")), server)
    finally:
        os.killpg(api.pid, signal.SIGTERM)
        api.wait(10)


def _stream(url: str, model: str, key: str | None) -> list[dict[str, Any]]:
    """One streamed chat call asking for usage: its data chunks."""
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    body = {"model": model, "messages": [{"role": "user", "content": "Name: Ada. Give the name."}], "stream": True,
            "stream_options": {"include_usage": True}, "max_tokens": 8}
    chunks = []
    with httpx.stream("POST", f"{url}/v1/chat/completions", json=body, headers=headers, timeout=30) as resp:
        assert resp.status_code == 200, resp.read()
        for line in resp.iter_lines():
            if line.startswith("data: ") and line != "data: [DONE]":
                chunks.append(json.loads(line[6:]))
    return chunks


def test_start_health_a_streamed_call_with_usage_and_stop(case, tmp_path):
    handle, reused = case.keeper.acquire(case.server, tmp_path / "engine.log")
    assert not reused and handle.url.startswith("http://127.0.0.1:") and handle.kind == case.kind
    again, reused = case.keeper.acquire(case.server, tmp_path / "engine.log")
    assert reused and again is handle, "an equal server part is served by the same endpoint"
    key = endpoint_key(case.engine) if case.kind == "openai" else None
    chunks = _stream(handle.url, handle.served_model, key)
    usage = [c["usage"] for c in chunks if c.get("usage")]
    assert usage and usage[-1]["prompt_tokens"] > 0 and usage[-1]["completion_tokens"] > 0
    assert {"reset_cache", "gauges"} <= handle.capabilities if case.kind == "vllm" else not handle.capabilities
    case.keeper.close_all()
    if case.kind == "vllm":
        assert not group_alive(handle.pgid), "the keeper stops the process group it started"
    else:  # the tuner stops nothing it did not start
        assert httpx.get(f"{case.engine.root}/health", timeout=5).status_code == 200


@pytest.mark.parametrize("case", ["openai"], indirect=True)  # a launched engine has no key and serves its model
def test_a_wrong_key_or_model_fails_the_start_with_its_reason(case, tmp_path, monkeypatch):
    from autotune.errors import EngineLaunchError

    monkeypatch.setenv("CONTRACT_API_KEY", "sk-wrong-key-000000000000")
    with pytest.raises(EngineLaunchError) as refused:
        case.keeper.acquire(case.server, tmp_path / "engine.log")
    assert refused.value.reason == "bad_config" and "refused the key" in str(refused.value)
    monkeypatch.setenv("CONTRACT_API_KEY", KEY)
    other = keeper_for(case.engine.model_copy(update={"model": "no-such-model"}), EngineRegistry(tmp_path / "e"))
    with pytest.raises(EngineLaunchError, match="does not serve model 'no-such-model'"):
        other.acquire(case.server, tmp_path / "engine.log")


def test_cost_per_task(case):
    space = SpaceConfig.model_validate({"name": "x", "engine": case.engine.model_dump(),
                                        "hardware": {"usd_per_hour": 0.36}})
    cost = task_cost(space, 2.0, {"input_tokens_per_task": 1000.0, "output_tokens_per_task": 100.0})
    if case.kind == "vllm":  # hours spread over the tasks one replica carries
        assert cost == {"usd_per_1k_tasks": pytest.approx(0.05), "usd_per_1k_tasks_hosted": pytest.approx(0.05),
                        "usd_per_1k_tasks_api": 0.0}
    else:  # tokens at the API's prices, whatever the rate
        assert cost == {"usd_per_1k_tasks": pytest.approx(0.65), "usd_per_1k_tasks_hosted": 0.0,
                        "usd_per_1k_tasks_api": pytest.approx(0.65)}


def test_bundle_files_name_the_key_and_never_hold_it(case):
    space = SpaceConfig.model_validate({"name": "x", "engine": case.engine.model_dump()})
    fields, files = deploy_files(space, TrialConfig(server=case.server, client=ClientConfig()), 2, "v1")
    assert KEY not in json.dumps(fields) + "".join(files.values())
    if case.kind == "vllm":
        assert set(files) == {"vllm-args.json", "serve.sh", "helm-values.yaml"} and fields["engine_argv"]
    else:
        assert set(files) == {"endpoint.yaml"} and fields["required_env"] == ["CONTRACT_API_KEY"]
        endpoint = yaml.safe_load(files["endpoint.yaml"])
        assert endpoint["model"] == "api-model" and endpoint["api_key_env"] == "CONTRACT_API_KEY"
        assert endpoint["usd_per_1m_output"] == 1.5
