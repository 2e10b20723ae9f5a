"""Engine argv / env built from every server knob."""

from __future__ import annotations

import json

import pytest

from autotune.config.knobs import ServerConfig
from autotune.config.space import EngineConfig
from autotune.engines.vllm import build_argv, build_env
from autotune.errors import EngineLaunchError

ENGINE = EngineConfig(python="/opt/engine/bin/python")


def flag(argv, name):
    i = argv.index(name)
    return argv[i + 1]


def test_minimal_argv_is_a_list_with_model_host_port():
    argv = build_argv(ServerConfig(model="/models/x"), ENGINE, 8123)
    assert argv[:3] == ["/opt/engine/bin/python", "-m", "vllm.entrypoints.openai.api_server"]
    assert flag(argv, "--model").endswith("/models/x")
    assert flag(argv, "--served-model-name") == "/models/x"
    assert flag(argv, "--host") == "127.0.0.1" and flag(argv, "--port") == "8123"
    assert "--dtype" not in argv and "--speculative-config" not in argv
    assert "--gpu-memory-utilization" not in argv


def test_every_server_knob_maps_to_its_flag():
    s = ServerConfig(model="/m", dtype="float32", quantization="awq", max_num_seqs=16, max_num_batched_tokens=1024,
                     block_size=32, enforce_eager=True, enable_prefix_caching=False, enable_chunked_prefill=True,
                     max_model_len=2048, seed=7)
    argv = build_argv(s, ENGINE, 1)
    assert flag(argv, "--dtype") == "float32"
    assert flag(argv, "--quantization") == "awq"
    assert flag(argv, "--max-num-seqs") == "16"
    assert flag(argv, "--max-num-batched-tokens") == "1024"
    assert flag(argv, "--block-size") == "32"
    assert "--enforce-eager" in argv
    assert "--no-enable-prefix-caching" in argv and "--enable-chunked-prefill" in argv
    assert flag(argv, "--max-model-len") == "2048"
    assert flag(argv, "--seed") == "7"


def test_quantization_none_is_not_passed_and_eager_off_is_absent():
    argv = build_argv(ServerConfig(model="/m", quantization="none", enforce_eager=False), ENGINE, 1)
    assert "--quantization" not in argv and "--enforce-eager" not in argv


def test_ngram_speculative_config():
    s = ServerConfig(model="/m", spec_method="ngram", num_speculative_tokens=4, prompt_lookup_max=3,
                     prompt_lookup_min=1, draft_model="ignored-for-ngram")
    spec = json.loads(flag(build_argv(s, ENGINE, 1), "--speculative-config"))
    assert spec == {"method": "ngram", "num_speculative_tokens": 4, "prompt_lookup_max": 3, "prompt_lookup_min": 1}


def test_draft_model_speculative_config_and_conditional_keys():
    s = ServerConfig(model="/m", spec_method="draft_model", num_speculative_tokens=2, draft_model="/d",
                     prompt_lookup_max=3)
    spec = json.loads(flag(build_argv(s, ENGINE, 1), "--speculative-config"))
    assert spec["method"] == "draft_model" and spec["model"].endswith("/d")
    assert "prompt_lookup_max" not in spec  # ngram-only setting does not leak into draft_model


def test_draft_model_without_model_is_a_trial_error():
    with pytest.raises(EngineLaunchError):
        build_argv(ServerConfig(model="/m", spec_method="draft_model"), ENGINE, 1)


def test_gpu_memory_utilization_only_on_cuda():
    s = ServerConfig(model="/m", gpu_memory_utilization=0.8)
    assert "--gpu-memory-utilization" not in build_argv(s, ENGINE, 1)
    cuda = EngineConfig(python="/p", device="cuda")
    assert flag(build_argv(s, cuda, 1), "--gpu-memory-utilization") == "0.8"


def test_command_and_extra_args_and_env():
    eng = EngineConfig(command=["vllm", "serve"], extra_args=["--swap-space", "0"], env={"A": "1"})
    argv = build_argv(ServerConfig(model="/m", kv_cache_space_gb=2), eng, 1)
    assert argv[:2] == ["vllm", "serve"] and argv[-2:] == ["--swap-space", "0"]
    assert build_env(ServerConfig(kv_cache_space_gb=2), eng) == {"A": "1", "VLLM_CPU_KVCACHE_SPACE": "2",
                                                                  "VLLM_SERVER_DEV_MODE": "1"}
    assert "VLLM_CPU_KVCACHE_SPACE" not in build_env(ServerConfig(kv_cache_space_gb=2), EngineConfig(device="cuda"))


def test_bundled_model_resolves_to_prepared_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("AUTOTUNE_MODELS_DIR", str(tmp_path))
    argv = build_argv(ServerConfig(model="smollm2-135m"), ENGINE, 1)
    assert flag(argv, "--model") == str(tmp_path / "smollm2-135m")
    assert flag(argv, "--served-model-name") == "smollm2-135m"


def test_quantization_knob_selects_bundled_variant(monkeypatch, tmp_path):
    monkeypatch.setenv("AUTOTUNE_MODELS_DIR", str(tmp_path))
    argv = build_argv(ServerConfig(model="smollm2-135m", quantization="w8a8"), ENGINE, 1)
    assert flag(argv, "--model") == str(tmp_path / "smollm2-135m-w8a8")
    assert flag(argv, "--quantization") == "compressed-tensors"
    assert flag(argv, "--served-model-name") == "smollm2-135m"
    # a vLLM method on a non-bundled model passes straight through
    awq = build_argv(ServerConfig(model="org/model-awq", quantization="awq"), ENGINE, 1)
    assert flag(awq, "--quantization") == "awq"


def test_unprepared_variant_is_reported(monkeypatch, tmp_path):
    from autotune.models.registry import problem

    monkeypatch.setenv("AUTOTUNE_MODELS_DIR", str(tmp_path))
    assert "autotune models prepare smollm2-135m-w8a8" in problem("smollm2-135m", "w8a8")
    assert problem("/definitely/not/here") == "model path does not exist"
    assert problem("org/hub-id") is None  # a GPU host resolves hub ids itself


def test_cpu_knobs_set_the_engine_environment_and_the_bundle_carries_them():
    """vLLM-CPU reads its KV space, thread binding and reserved cores from the environment, not flags: a launch and
    a deployment of the same config set the same variables; a CUDA engine gets none of them."""
    from autotune.ops.export import deploy_env

    server = ServerConfig(kv_cache_space_gb=2, cpu_threads_bind="nobind", cpu_reserved_cores=0)
    want = {"VLLM_CPU_KVCACHE_SPACE": "2", "VLLM_CPU_OMP_THREADS_BIND": "nobind", "VLLM_CPU_NUM_OF_RESERVED_CPU": "0"}
    cpu = EngineConfig(device="cpu")
    assert {k: v for k, v in build_env(server, cpu).items() if k.startswith("VLLM_CPU")} == want
    assert deploy_env(cpu, server)[0] == want
    assert not any(k.startswith("VLLM_CPU") for k in build_env(server, EngineConfig(device="cuda")))
    assert "--cpu-reserved-cores" not in build_argv(server, cpu, 1), "an env knob is no flag"
