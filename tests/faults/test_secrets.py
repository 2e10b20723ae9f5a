"""Secrets never leave the process: by name or by shape, through a search, an export, a report and a nightly,
no file, store or console line holds one; exports refer to them by name."""

from __future__ import annotations

import json
import sys

from autotune.search.study import SearchOptions, run_search
from tests.conftest import cli_invoke
from tests.stand_in import HERE, ITEM, NullReporter, _study
from tests.stand_in import files_under as _files

SECRETS = {"HF_TOKEN": "hf_SeCrEt_hf_0123456789", "OPENAI_API_KEY": "sk-SeCrEt-openai-987654",
           "SERVER_KEY": "vk-SeCrEt-server-424242"}
JWT = ("eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJzaGFwZWQtdGVzdCJ9."
       "Q2hAPeDsIgNaTuRe0123456789abcdefXYZ_-qw")
# secrets by their shape, under names with no secret word: name -> (the value in engine.env, the secret inside it)
SHAPED = {
    "OTEL_EXPORTER_OTLP_HEADERS": ("Authorization=Bearer tkn9F8a7B6c5D4e3F2a1bQ", "tkn9F8a7B6c5D4e3F2a1bQ"),
    "PROXY_AUTHORIZATION_VALUE": ("Basic dXNlcjpzaGFwZWQtcHc5OTE=", "dXNlcjpzaGFwZWQtcHc5OTE="),
    "HTTPS_PROXY": ("http://proxyuser:Pr0xyPw-shape-77@proxy.local:3128", "Pr0xyPw-shape-77"),
    "MIRROR_URL": ("https://tok3nAsUser9Zq8Xw7Vv6@git.example.org/r.git", "tok3nAsUser9Zq8Xw7Vv6"),
    "CONNECTION_STRING": ("postgresql://app:DbPw-shape-4242@db.internal:5432/app", "DbPw-shape-4242"),
    "UPSTREAM_ID": ("AKIASHAPETEST7Q2X9ZW", "AKIASHAPETEST7Q2X9ZW"),
    "GH_MIRROR": ("ghp_ShApEd0123456789abcdefghijKLMNOPQRst", "ghp_ShApEd0123456789abcdefghijKLMNOPQRst"),
    "SLACK_HOOK_ID": ("xoxb-1234567890-9876543210-ShApEdSlAcKtOkEn", "xoxb-1234567890-9876543210-ShApEdSlAcKtOkEn"),
    "SESSION_JWT": (JWT, JWT),
    "HUB_READ": ("hf_ShApEdHuGgInGfAcE0123456789ab", "hf_ShApEdHuGgInGfAcE0123456789ab"),
    "OAI_PROJECT": ("sk-proj-ShApEd0123456789OpenAIkey", "sk-proj-ShApEd0123456789OpenAIkey"),
    "TRACE_HEADERS": ("x-trace=static,x-tenant=Zk9R2xTq7LmW4vBn8YpC3sHd", "Zk9R2xTq7LmW4vBn8YpC3sHd"),
}


def test_secrets_reach_no_file_and_no_store(tmp_path, monkeypatch):
    """Known secret values in the engine env (literal and `${NAME}`, by name and by shape only) and the workload
    (`api_key`), through a search (one trial fails with the token in its error), an export, a report and a
    nightly: grep every file written, the Optuna and MLflow stores and the console for them."""
    monkeypatch.setenv("AT_TEST_SERVER_KEY", SECRETS["SERVER_KEY"])
    (tmp_path / "items.jsonl").write_text("".join(json.dumps({**ITEM, "id": f"i{i}"}) + "\n" for i in range(4)))
    (tmp_path / "wl.yaml").write_text(
        "name: w\ndataset: items.jsonl\nfields: [{name: name, question: 'Who?'}]\n"
        "prompt: {context: '{article}', task: 'Who?'}\narrival: {mode: closed, users: 2}\n"
        f"warmup_s: 0.5\nduration_s: 2\ndrain_timeout_s: 5\nmax_tokens: 16\napi_key: {SECRETS['SERVER_KEY']}\n")
    space = tmp_path / "space.yaml"
    space.write_text(
        f"name: s\nworkload: wl.yaml\nengine:\n  command: [{sys.executable}, {HERE / 'fake_engine.py'}]\n"
        f"  startup_timeout_s: 5\n  shutdown_timeout_s: 3\n  env:\n    HF_TOKEN: {SECRETS['HF_TOKEN']}\n"
        f"    OPENAI_API_KEY: {SECRETS['OPENAI_API_KEY']}\n    VLLM_API_KEY: '${{AT_TEST_SERVER_KEY}}'\n"
        f"    FAKE_ECHO_ENV: {','.join(SHAPED)}\n    FAKE_FAULTS: '13:unsupported'\n"
        + "".join(f"    {name}: {json.dumps(value)}\n" for name, (value, _) in SHAPED.items()) +
        f"knobs:\n  model: {{value: {tmp_path}}}\n  max_num_seqs: {{choices: [4, 13]}}\n"
        "search: {n_trials: 3, sampler: grid, max_failures: 3, batch: 1, noise_repeats: 0}\n")
    run_dir = tmp_path / "runs"
    opts = SearchOptions(space_file=space, run_dir=run_dir)
    summary = run_search(opts, NullReporter())
    assert summary.trials_complete >= 1, "the key reached the load generator: the server accepted it"
    assert summary.trials_failed >= 1, "max_num_seqs 13 fails with the token in its error message"
    console = []
    for args in (["export", "--study", "s", "--run-dir", str(run_dir), "--out", str(tmp_path / "exports")],
                 ["report", "--study", "s", "--run-dir", str(run_dir), "--out", str(tmp_path / "report")],
                 ["nightly", "--study", "s", "--run-dir", str(run_dir), "--exports", str(tmp_path / "exports"),
                  "--reports", str(tmp_path / "nightly"), "--confirm", "2", "--new-trials", "1"]):
        res = cli_invoke(args)
        assert res.exit_code in (0, 5), res.output
        console.append(res.output)

    inputs = {space, tmp_path / "wl.yaml"}  # the user's own files hold the literal values
    secrets = {**SECRETS, **{name: part for name, (_, part) in SHAPED.items()}}
    leaks = [(str(p), name) for p in _files(tmp_path) if p not in inputs
             for name, v in secrets.items() if v.encode() in p.read_bytes()]
    leaks += [("console", name) for text in console for name, v in secrets.items() if v in text]
    assert leaks == []
    # and the policy did act (this test can fail): masked in the engine log, referred to by name in the bundle
    logs = [p.read_text() for p in run_dir.rglob("engine.log")]
    assert any("HF_TOKEN=***" in text for text in logs)
    assert all(any(f"{name}=" in text and "***" in text.split(f"{name}=", 1)[1].splitlines()[0] for text in logs)
               for name in SHAPED), "every shaped secret was echoed by the engine, masked"
    bundle = next((tmp_path / "exports" / "s").glob("v*"))
    serve = (bundle / "serve.sh").read_text()
    assert 'export HF_TOKEN="${HF_TOKEN:?' in serve and 'export VLLM_API_KEY="${AT_TEST_SERVER_KEY:?' in serve
    assert all(f'export {name}="${{{name}:?' in serve for name in SHAPED), serve
    assert json.loads((bundle / "bundle.json").read_text())["required_env"] == sorted(
        ["AT_TEST_SERVER_KEY", "HF_TOKEN", "OPENAI_API_KEY", *SHAPED])
    helm = (bundle / "helm-values.yaml").read_text()
    assert "secretKeyRef" in helm and all(f"key: {name}" in helm for name in SHAPED)
    failed = [t for t in _study(opts).trials if t.state.name == "FAIL" and t.user_attrs["fail_reason"] == "unsupported"]
    assert failed and "hf ***" in failed[0].user_attrs["fail_message"]


def test_secret_flags_in_argv_are_refused(write):
    space = write("s.yaml", "name: t\nengine: {python: /bin/sh, extra_args: [--api-key, sk-live-123456]}\n")
    res = cli_invoke(["validate", str(space)])
    assert res.exit_code == 2 and "engine.extra_args" in res.stderr and "engine.env" in res.stderr
    assert "sk-live-123456" not in res.output


