"""Secrets never reach MLflow params, tags or artifacts."""

from autotune.secrets import redact, redact_argv


def test_redact_argv_hides_secret_flag_values():
    argv = ["vllm", "--model", "m", "--api-key", "sk-123", "--hf-token=abc", "--port", "1"]
    assert redact_argv(argv) == ["vllm", "--model", "m", "--api-key", "***", "--hf-token=***", "--port", "1"]


def test_redact_mapping():
    assert redact({"HF_TOKEN": "x", "OPENAI_API_KEY": "y", "dtype": "float32"}) == {
        "HF_TOKEN": "***", "OPENAI_API_KEY": "***", "dtype": "float32"}
