"""Secrets never reach MLflow params, tags or artifacts."""

from autotune.secrets import redact, redact_argv


def test_redact_argv_hides_secret_flag_values():
    argv = ["vllm", "--model", "m", "--api-key", "sk-123", "--hf-token=abc", "--port", "1"]
    assert redact_argv(argv) == ["vllm", "--model", "m", "--api-key", "***", "--hf-token=***", "--port", "1"]


def test_redact_mapping():
    assert redact({"HF_TOKEN": "x", "OPENAI_API_KEY": "y", "dtype": "float32"}) == {
        "HF_TOKEN": "***", "OPENAI_API_KEY": "***", "dtype": "float32"}


def test_secret_names_are_words_not_substrings():
    from autotune.secrets import is_secret_name

    for name in ("HF_TOKEN", "OPENAI_API_KEY", "PGPASSWORD", "AWS_SECRET_ACCESS_KEY", "--api-key", "apiKey", "DB_PWD"):
        assert is_secret_name(name), name
    for name in ("TOKENIZERS_PARALLELISM", "max_num_batched_tokens", "max_tokens", "--tokenizer", "KEYMAP", "PWD",
                 "SSH_AUTH_SOCK"):
        assert not is_secret_name(name), name


def test_common_words_are_never_registered_as_secrets():
    from autotune.secrets import register_env, scrub

    register_env({"TOKENIZERS_PARALLELISM": "false", "SOME_FLAG_TOKEN": "true"})
    assert scrub('{"enforce_eager": false, "x": true}') == '{"enforce_eager": false, "x": true}'


def test_argv_secrets_values_switches_and_shell_strings():
    from autotune.secrets import argv_secrets

    assert argv_secrets(["--api-key", "sk-1", "--return-tokens-as-token-ids", "--port", "1"]) == [0]
    assert argv_secrets(["bash", "-c", "vllm serve m --api-key sk-123456"]) == [2]
    assert argv_secrets(["docker", "run", "-e", "HF_TOKEN=hf_x", "-e", "HF_TOKEN"]) == [3]
    assert redact_argv(["bash", "-c", "vllm serve --hf-token abcdef"]) == ["bash", "-c", "***"]


def test_log_records_and_their_tracebacks_are_scrubbed():
    import logging

    from autotune.secrets import install_log_scrubbing, register

    register(["sk-LOGGED-123456"])
    install_log_scrubbing()
    try:
        raise RuntimeError("auth failed for sk-LOGGED-123456")
    except RuntimeError:
        record = logging.getLogger("x").makeRecord("x", logging.ERROR, "f", 1, "key %s", ("sk-LOGGED-123456",),
                                                   __import__("sys").exc_info())
    text = logging.Formatter().format(record)
    assert "sk-LOGGED-123456" not in text and "auth failed for ***" in text and "key ***" in text
