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


def test_secrets_are_recognised_by_their_shape_under_any_name():
    from autotune.secret_detect import secret_parts
    from tests.faults.test_secrets import SHAPED

    for name, (value, secret) in SHAPED.items():
        assert secret in secret_parts(value, name), name
    assert "Pr0xy-pw-88" in secret_parts("export via http://u:Pr0xy-pw-88@10.0.0.1:3128 now")  # a URL inside text
    assert secret_parts("api-key=plainwordkey", "CLIENT_HEADERS") == ["plainwordkey"]  # a secret-named header


def test_ordinary_values_are_not_secrets_by_shape():
    from autotune.secret_detect import secret_parts

    ordinary = {"LANG": "en_US.UTF-8", "PATH": "/usr/local/bin:/usr/bin", "HOSTPORT": "localhost:8000",
                "MSG": "Basic configuration mode", "URL": "http://127.0.0.1:8000/v1", "RUN_ID": "trial-0003",
                "PG": "postgresql://postgres@localhost/db", "UUID": "123e4567-e89b-12d3-a456-426614174000",
                "OTEL_RESOURCE_ATTRIBUTES": "service.name=autotune,deployment.environment=ci",
                "VLLM_CPU_OMP_THREADS_BIND": "0-1", "MODEL": "HuggingFaceTB/SmolLM2-135M-Instruct"}
    assert {k: secret_parts(v, k) for k, v in ordinary.items() if secret_parts(v, k)} == {}


def test_a_credential_in_argv_is_refused_by_its_shape(write):
    from tests.conftest import cli_invoke

    space = write("s.yaml", "name: t\nengine: {python: /bin/sh, extra_args: [--otlp-traces-endpoint, "
                  "'https://u:Sh4pe-pw-99@otel.example/v1']}\n")
    res = cli_invoke(["validate", str(space)])
    assert res.exit_code == 2 and "engine.extra_args" in res.stderr and "Sh4pe-pw-99" not in res.output
