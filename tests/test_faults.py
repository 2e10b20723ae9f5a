"""Fault injection: bad input never gives a traceback, every exit path leaves every trial and run final, secrets
never reach a file or a store, transient launch faults are retried, not remembered. Stand-in engine (the
mechanisms do not depend on the engine), real Locust, real MLflow and Optuna stores.

Grow this file whenever a new class of fault turns up (the frozen engine lives in test_fault_hang.py).
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from pathlib import Path

import optuna
import pytest

from autotune.search.study import SearchOptions, run_search
from tests.conftest import cli_invoke
from tests.test_study import HERE, NullReporter, _mlflow_runs, _study
from tests.test_study import setup as setup  # noqa: F401 (the fixture)

ITEM = {"id": "a", "input": {"article": "Ada Lovelace, ada@example.org"}, "reference": {"name": "Ada Lovelace"}}


def _files(root: Path):
    return [p for p in root.rglob("*") if p.is_file()]


def _no_running(opts: SearchOptions, name: str = "s") -> None:
    """Every Optuna trial and every MLflow run (trials and the parent) is in a final state."""
    states = [t.state.name for t in _study(opts, name).trials]
    assert "RUNNING" not in states, states
    _, runs = _mlflow_runs(opts, name)
    assert runs and all(r.info.status != "RUNNING" for r in runs), [(r.info.run_name, r.info.status) for r in runs]


# ---------------------------------------------------------------- 1. secrets never leave the process

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
        "search: {n_trials: 3, sampler: grid, max_failures: 3, batch: 1}\n")
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


# ---------------------------------------------------------------- 2. bad input: one line, non-zero, no traceback

def _bad_inputs(tmp_path: Path) -> list[tuple[str, list[str], str]]:
    """(case, argv, text the one line must contain)."""
    good = [json.dumps({**ITEM, "id": f"i{i}"}) for i in range(3)]

    def dataset(name: str, lines: list[bytes]) -> Path:
        (tmp_path / f"{name}.jsonl").write_bytes(b"\n".join(lines) + b"\n")
        wl = tmp_path / f"{name}.yaml"
        wl.write_text(f"name: w\ndataset: {name}.jsonl\nfields: [{{name: name, question: 'Who?'}}]\n"
                      "prompt: {context: '{article}', task: 'Who?'}\n")
        return wl

    enc = [g.encode() for g in good]
    wl_utf8 = dataset("latin1", [*enc[:2], b'{"id": "z", "input": {"article": "Caf\xe9"}, "reference": {}}'])
    wl_json = dataset("notjson", [*enc[:2], b'{"id": "z", "input": '])
    wl_dup = dataset("dup", [enc[0], enc[0]])
    wl_input = dataset("lacks", [*enc[:2], b'{"id": "z", "input": {"text": "x"}, "reference": {}}'])
    wl_empty = dataset("empty", [b""])
    (tmp_path / "engine-dir").mkdir()
    noexec = tmp_path / "python-noexec"
    noexec.write_text("#!/bin/sh\n")
    noexec.chmod(0o644)
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"\xff\xfe\x00garbage\x80")

    def space(name: str, engine: str, workload: Path | None = None) -> Path:
        p = tmp_path / f"{name}.yaml"
        p.write_text(f"name: {name}\n" + (f"workload: {workload.name}\n" if workload else "") + f"engine: {engine}\n")
        return p

    sp_dir = space("sp-dir", f"{{python: {tmp_path / 'engine-dir'}}}")
    sp_noexec = space("sp-noexec", f"{{python: {noexec}}}")
    sp_ref = space("sp-ref", "{python: /bin/sh, env: {HF_TOKEN: '${AT_TEST_UNSET_VARIABLE}'}}")
    sp_badline = space("sp-badline", f"{{command: [{sys.executable}]}}", wl_json)
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    rd = ["--run-dir", str(tmp_path / "runs")]
    typo = ["--run-dir", str(tmp_path / "typo" / "deep")]
    sp_ok = space("sp-ok", f"{{command: [{sys.executable}]}}", dataset("ok", enc))
    sp_step = space("sp-step", "{python: /bin/sh}")
    sp_step.write_text(sp_step.read_text() + "knobs: {max_num_seqs: {low: 2, high: 8, step: -2}}\n")
    sp_nan = space("sp-nan", "{python: /bin/sh}")
    sp_nan.write_text(sp_nan.read_text() + "constraints: [{metric: error_rate, op: '<=', value: .nan}]\n")
    sp_name = tmp_path / "sp-name.yaml"
    sp_name.write_text("name: ../../evil\nengine: {python: /bin/sh}\n")
    sp_host = space("sp-host", "{python: /bin/sh, host: 'not a host!'}")
    sp_secret = space("sp-secret", "{python: /bin/sh, env: {HF_TOKEN: 88812345678}}")
    wl_inf = dataset("inf", enc)
    wl_inf.write_text(wl_inf.read_text() + "duration_s: .inf\n")
    wl_attr = dataset("attr", enc)
    wl_attr.write_text(wl_attr.read_text().replace("'{article}'", "'{article.x}'"))
    deep = tmp_path / "deep.yaml"
    deep.write_text("a: " + "[" * 5000 + "]" * 5000 + "\n")
    dup_knob = space("dup-knob", "{python: /bin/sh}")
    dup_knob.write_text(dup_knob.read_text() + "knobs:\n  max_num_seqs: {choices: [4]}\n"
                        "  max_num_seqs: {choices: [8]}\n")
    dup_top = space("dup-top", "{python: /bin/sh}")
    dup_top.write_text(dup_top.read_text() + "sla: {ttft_ms: 100}\nsla: {ttft_ms: 900}\n")
    dup_list = space("dup-list", "{python: /bin/sh}")
    dup_list.write_text(dup_list.read_text() + "constraints:\n  - {metric: error_rate, op: '<=', value: 0.1, "
                        "value: 0.9}\n")
    wl_dupkey = dataset("dupkey", enc)
    wl_dupkey.write_text(wl_dupkey.read_text() + "capacity: {start_rate: 1, start_rate: 2}\n")
    wl_dupjson = dataset("dupjson", [*enc[:2], b'{"id": "z", "input": {"article": "a", "article": "b"}, '
                                                b'"reference": {}}'])
    bad_bundle = tmp_path / "exports" / "s" / "v1"
    bad_bundle.mkdir(parents=True)
    (bad_bundle / "bundle.json").write_text("{not json")
    return [
        ("knob step not positive", ["validate", str(sp_step)], "knobs.max_num_seqs.step"),
        ("constraint value NaN", ["validate", str(sp_nan)], "constraints.0.value"),
        ("study name leaves the run dir", ["validate", str(sp_name)], "name"),
        ("engine host does not resolve", ["validate", str(sp_host)], "engine.host"),
        ("infinite window", ["validate", str(wl_inf)], "duration_s"),
        ("template attribute the input lacks", ["validate", str(wl_attr)], "prompt.context"),
        ("YAML nested too deeply", ["validate", str(deep)], "nested too deeply"),
        ("space repeats a knob", ["validate", str(dup_knob)],
         "knobs.max_num_seqs: duplicate key on line 5 (first on line 4)"),
        ("space repeats a top-level key", ["validate", str(dup_top)], "sla: duplicate key on line 4"),
        ("space repeats a key inside a list item", ["validate", str(dup_list)], "constraints.0.value: duplicate"),
        ("workload repeats a nested key", ["validate", str(wl_dupkey)], "capacity.start_rate: duplicate key"),
        ("dataset item repeats a key", ["validate", str(wl_dupjson)], "line 3: article: duplicate key"),
        ("secret value of the wrong type", ["validate", str(sp_secret)], "engine.env.HF_TOKEN"),
        ("search: study name with a slash", ["search", "--space", str(sp_ok), "--study-name", "a/b", *rd],
         "--study-name"),
        ("search: in-memory storage", ["search", "--space", str(sp_ok), "--storage", "sqlite://", *rd], "in-memory"),
        ("nightly: forced value of the wrong type", ["nightly", "--study", "x", "--force", "max_num_seqs=abc"],
         "must be a int"),
        ("dataset not UTF-8 on a later line", ["validate", str(wl_utf8)], "line 3: is not UTF-8"),
        ("dataset not JSON on a later line", ["validate", str(wl_json)], "line 3: is not JSON"),
        ("dataset repeats an id", ["validate", str(wl_dup)], "line 2: repeats the id of line 1"),
        ("item lacks a template input", ["validate", str(wl_input)], "line 3 lacks"),
        ("empty dataset", ["validate", str(wl_empty)], "holds no items"),
        ("YAML not UTF-8", ["validate", str(binary)], str(binary)),
        ("config is a directory", ["validate", str(tmp_path)], "file does not exist"),
        ("engine interpreter is a directory", ["validate", str(sp_dir)], "must be a file, not a directory"),
        ("engine interpreter not executable", ["validate", str(sp_noexec)], "is not executable"),
        ("env reference unset", ["validate", str(sp_ref)], "AT_TEST_UNSET_VARIABLE"),
        ("search: dataset bad on a later line", ["search", "--space", str(sp_badline), "--run-dir",
                                                 str(tmp_path / "runs-badline")], "line 3: is not JSON"),
        ("search: negative timeout", ["search", "--timeout", "-5"], "--timeout"),
        ("search: zero trials", ["search", "--n-trials", "0"], "--n-trials"),
        ("search: negative seed", ["search", "--seed", "-1"], "--seed"),
        ("search: malformed storage URL", ["search", "--space", str(sp_ok), "--storage", "not a url", *rd],
         "--storage"),
        ("search: storage driver missing", ["search", "--space", str(sp_ok), "--storage",
                                            "postgresql+pg8000://u@127.0.0.1:1/db", *rd], "no module 'pg8000'"),
        ("search: storage with a bad scheme", ["search", "--space", str(sp_ok), "--storage", "nosuchdb://x/y", *rd],
         "--storage"),
        ("search: unwritable storage", ["search", "--space", str(sp_ok), "--storage",
                                        "sqlite:////proc/autotune-test/optuna.db", *rd], "cannot write"),
        ("search: unwritable MLflow store", ["search", "--space", str(sp_ok), "--mlflow-uri",
                                             "sqlite:////proc/autotune-test/mlflow.db", *rd], "--mlflow-uri"),
        ("search: run dir is a file", ["search", "--space", str(sp_ok), "--run-dir", str(a_file)], "--run-dir"),
        ("search: unknown sampler", ["search", "--space", str(sp_ok), "--sampler", "bogus", *rd], "sampler"),
        ("search: unknown option", ["search", "--no-such-option"], "--no-such-option"),
        ("export: missing study", ["export", "--study", "ghost-study", *typo], "ghost-study"),
        ("export: negative target rate", ["export", "--study", "x", "--target-rate", "-1"], "--target-rate"),
        ("export: attainment above 1", ["export", "--study", "x", "--min-sla", "2"], "--min-sla"),
        ("nightly: missing study", ["nightly", "--study", "ghost-study", *typo], "ghost-study"),
        ("nightly: malformed storage", ["nightly", "--study", "x", "--storage", "sqlite:/bad"], "--storage"),
        ("nightly: alpha 0", ["nightly", "--study", "x", "--alpha", "0"], "--alpha"),
        ("nightly: unknown forced knob", ["nightly", "--study", "x", "--force", "bogus=1"], "--force"),
        ("report: missing study", ["report", "--study", "ghost-study", *typo], "ghost-study"),
        ("report: malformed storage", ["report", "--study", "x", "--storage", "::"], "--storage"),
        ("ui: port out of range", ["ui", "--port", "70000"], "--port"),
        ("models: unknown model", ["models", "prepare", "no-such-model"], "no-such-model"),
        ("unknown command", ["frobnicate"], "frobnicate"),
    ]


def test_every_command_answers_bad_input_with_one_line(tmp_path):
    failures = []
    for case, argv, expected in _bad_inputs(tmp_path):
        started = time.monotonic()
        res = cli_invoke(argv)
        lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
        ok = (res.exit_code != 0 and len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0]
              and "Traceback" not in res.output and time.monotonic() - started < 20)
        if not ok:
            failures.append(f"{case}: exit {res.exit_code}, stderr {res.stderr!r}, stdout {res.stdout[-300:]!r}")
    assert failures == []
    # the search that met a bad dataset line created nothing: no study, no MLflow run, not even its run dir
    assert not (tmp_path / "runs-badline").exists()
    # reading commands on a mistyped run dir create nothing; a secret-named value is never echoed
    assert not (tmp_path / "typo").exists()
    assert "88812345678" not in cli_invoke(["validate", str(tmp_path / "sp-secret.yaml")]).output


# ---------------------------------------------------------------- 3. every exit path leaves everything final

def test_unexpected_error_in_a_trial_fails_trial_run_and_parent(setup, monkeypatch):
    opts = setup("{choices: [2, 4]}", n_trials=2)

    def broken(*a, **k):
        raise RuntimeError("deliberate bug in the measurement")

    monkeypatch.setattr("autotune.search.screening.run_trial", broken)
    with pytest.raises(RuntimeError):
        run_search(opts, NullReporter())
    trial = _study(opts).trials[0]
    assert trial.state.name == "FAIL" and trial.user_attrs["fail_reason"] == "internal_error"
    _no_running(opts)
    _, runs = _mlflow_runs(opts)
    assert {r.data.tags.get("autotune.role"): r.info.status for r in runs} == {"study": "FAILED", "trial": "FAILED"}


def test_engine_that_cannot_be_executed_is_a_failed_trial_and_the_budget_stops(setup, tmp_path):
    """The launcher passed validation, then lost its execute bit: FAILED trials with a reason, the failure
    budget ends the search, nothing is left RUNNING."""
    opts = setup("{choices: [2, 4]}", n_trials=4, max_failures=1)
    launcher = tmp_path / "engine.sh"
    launcher.write_text(f"#!/bin/sh\nexec {sys.executable} {HERE / 'fake_engine.py'} \"$@\"\n")
    launcher.chmod(0o755)
    text = opts.space_file.read_text().replace(f"[{sys.executable}, {HERE / 'fake_engine.py'}]", f"[{launcher}]")
    opts.space_file.write_text(text)

    class LoseExecBit(NullReporter):
        def search_started(self, *a):
            launcher.chmod(0o644)

    summary = run_search(opts, LoseExecBit())
    assert "failure budget" in summary.stopped_because
    reasons = {t.user_attrs["fail_reason"] for t in _study(opts).trials}
    assert reasons == {"not_executable"}
    _no_running(opts)


def test_timeout_leaves_everything_final(setup):
    opts = setup("{choices: [2, 4]}", n_trials=5)
    opts.timeout_s = 1.0
    summary = run_search(opts, NullReporter())
    assert summary.stopped_because == "timeout" and summary.trials_complete == 1
    _no_running(opts)


def test_store_failing_mid_search_leaves_no_run_running(setup):
    """The artifact store breaks after the first trial: one TrackingError line, and the runs the store can still
    update are FAILED, not RUNNING."""
    import shutil

    from autotune.errors import TrackingError

    opts = setup("{choices: [2, 4]}", n_trials=3)

    class Breaker(NullReporter):
        def trial_finished(self, number, metrics, error):
            art = opts.run_dir / "mlartifacts"
            shutil.rmtree(art, ignore_errors=True)
            art.write_text("not a directory any more")

    with pytest.raises(TrackingError):
        run_search(opts, Breaker())
    _no_running(opts)


def test_unwritable_mlflow_store_fails_in_seconds_before_any_study(setup):
    opts = setup("{value: 4}", n_trials=1)
    opts.mlflow_uri = "sqlite:////proc/autotune-test/mlflow.db"  # unwritable even for root
    started = time.monotonic()
    res = cli_invoke(["search", "--space", str(opts.space_file), "--run-dir", str(opts.run_dir), "--mlflow-uri",
                      opts.mlflow_uri])
    assert res.exit_code == 2 and len(res.stderr.strip().splitlines()) == 1 and "--mlflow-uri" in res.stderr
    assert time.monotonic() - started < 10
    assert not optuna.get_all_study_summaries(f"sqlite:///{opts.run_dir / 'optuna.db'}")


# ---------------------------------------------------------------- 5. transient faults are not remembered

def test_port_taken_before_the_engine_binds_is_retried_on_a_new_port(setup, monkeypatch):
    import autotune.engines.vllm as vllm

    opts = setup("{value: 4}", n_trials=1)
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    real = vllm.free_port
    ports = iter([taken.getsockname()[1]])
    monkeypatch.setattr(vllm, "free_port", lambda host="127.0.0.1": next(ports, None) or real(host))
    try:
        summary = run_search(opts, NullReporter())
    finally:
        taken.close()
    assert summary.trials_complete == 1
    log = next(opts.run_dir.rglob("engine.log")).read_text()
    assert "Address already in use" in log  # the first attempt met the race


def test_damaged_weights_are_a_broken_input_never_a_known_failure(setup, tmp_path):
    """Weights the engine cannot read (a damage the header check cannot see) fail the trial as `broken_model`;
    once repaired, the same server part launches again: the damage was never a property of the config."""
    opts = setup("{value: 4}", n_trials=1)
    (tmp_path / "CORRUPT").write_text("")
    run_search(opts, NullReporter())
    (failed,) = _study(opts).trials
    assert failed.user_attrs["fail_reason"] == "broken_model", failed.user_attrs
    (tmp_path / "CORRUPT").unlink()  # repaired
    opts.n_trials = 2
    summary = run_search(opts, NullReporter())
    assert summary.trials_complete == 1
    assert [t.user_attrs.get("fail_reason") for t in _study(opts).trials] == ["broken_model", None]


def _truncated_model(folder: Path) -> Path:
    import numpy as np
    from safetensors.numpy import save_file

    folder.mkdir(parents=True, exist_ok=True)
    weights = folder / "model.safetensors"
    save_file({"w": np.zeros((64, 64), dtype=np.float32)}, str(weights))
    weights.write_bytes(weights.read_bytes()[:-1000])
    return folder


def test_a_truncated_model_is_named_before_any_launch(setup, tmp_path):
    """`validate` and `search` name the damaged file in one line (exit 2); the engine refuses it in milliseconds
    as `broken_model` if it is damaged after the search began, and launches nothing."""
    from autotune.config.knobs import ServerConfig
    from autotune.config.space import EngineConfig
    from autotune.engines.process import EngineRegistry
    from autotune.engines.vllm import VLLMEngine
    from autotune.errors import EngineLaunchError

    opts = setup("{value: 4}", n_trials=1)
    _truncated_model(tmp_path)
    for args in (["validate", str(opts.space_file)], ["search", "--space", str(opts.space_file), "--run-dir",
                                                       str(opts.run_dir)]):
        res = cli_invoke(args)
        assert res.exit_code == 2 and len(res.stderr.strip().splitlines()) == 1, res.output
        assert "knobs.model" in res.stderr and "model.safetensors is truncated" in res.stderr, res.stderr
    engine = VLLMEngine(EngineConfig(command=[sys.executable, str(HERE / "fake_engine.py")]),
                        EngineRegistry(tmp_path / "engines"))
    started = time.monotonic()
    with pytest.raises(EngineLaunchError) as err:
        engine.launch(ServerConfig(model=str(tmp_path)), tmp_path / "engine.log")
    assert err.value.reason == "broken_model" and time.monotonic() - started < 1
    assert not (tmp_path / "engine.log").exists()  # nothing was started


def test_transient_launch_failures_are_not_remembered(setup):
    """A health timeout (a busy host) may not recur: the same server config is launched again, unlike OOM."""
    opts = setup("{value: 15}", n_trials=2, max_failures=5, faults="15:hang")
    run_search(opts, NullReporter())
    assert [t.user_attrs["fail_reason"] for t in _study(opts).trials] == ["health_timeout", "health_timeout"]


def test_permanent_launch_failures_are_remembered(setup):
    opts = setup("{value: 14}", n_trials=2, max_failures=5, faults="14:oom")
    run_search(opts, NullReporter())
    reasons = [t.user_attrs["fail_reason"] for t in _study(opts).trials]
    assert reasons[0] == "oom" and len(reasons) >= 2 and set(reasons[1:]) == {"known_failure"}
    assert len(list((opts.run_dir / "s").glob("trial-*/engine.log"))) == 1  # launched once


def test_stopped_process_has_no_secret_in_environment_of_load_generator(monkeypatch):
    """The load generator's environment holds no secret-looking variable except the one bearer token it needs."""
    from autotune.loadgen.launch import clean_env

    monkeypatch.setenv("SOME_SERVICE_TOKEN", "tok-123456")
    assert "SOME_SERVICE_TOKEN" not in clean_env() and "PATH" in clean_env()
    assert os.environ["SOME_SERVICE_TOKEN"] == "tok-123456"


def test_mlflow_database_gone_mid_search_is_one_line_on_screen(setup, monkeypatch, capfd):
    """The MLflow database disappears after the first trial (replaced by a folder): the CLI prints one `error:`
    line and no MLflow traceback; the completed trial stays in Optuna, and nothing is left RUNNING there."""
    import shutil

    import autotune.progress as progress

    opts = setup("{choices: [2, 4]}", n_trials=3)
    db = opts.run_dir / "mlflow.db"
    real = progress.RichReporter.trial_finished

    def break_store(self, number, metrics, error):
        real(self, number, metrics, error)
        db.unlink()
        db.mkdir()
        shutil.rmtree(opts.run_dir / "mlartifacts", ignore_errors=True)

    monkeypatch.setattr(progress.RichReporter, "trial_finished", break_store)
    res = cli_invoke(["search", "--space", str(opts.space_file), "--run-dir", str(opts.run_dir)])
    captured = capfd.readouterr()
    screen = res.output + captured.out + captured.err
    errors = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert res.exit_code == 4 and len(errors) == 1 and errors[0].startswith("error: MLflow store"), res.stderr
    assert "Traceback" not in screen and "SQLAlchemy" not in captured.err
    states = [t.state.name for t in _study(opts).trials]
    assert states[0] == "COMPLETE" and "RUNNING" not in states


def test_engine_frozen_during_launch_fails_in_seconds(setup, tmp_path):
    """SIGSTOP while the engine starts: `engine_hung` after a few seconds, not at startup_timeout_s (60 here)."""
    import signal

    from autotune.engines.process import group_alive

    opts = setup("{value: 15}", n_trials=1, max_failures=0, faults="15:hang")  # never becomes healthy
    opts.space_file.write_text(opts.space_file.read_text().replace("startup_timeout_s: 3", "startup_timeout_s: 60"))
    frozen: list[int] = []

    class FreezeAtLaunch(NullReporter):
        def phase(self, name):
            if name.startswith("launching (") and not frozen:
                [entry] = [json.loads(p.read_text()) for p in (opts.run_dir / "engines").glob("*.json")]
                os.killpg(entry["pgid"], signal.SIGSTOP)
                frozen.append(entry["pgid"])

    started = time.monotonic()
    run_search(opts, FreezeAtLaunch())
    assert frozen and time.monotonic() - started < 20
    assert _study(opts).trials[0].user_attrs["fail_reason"] == "engine_hung"
    assert not group_alive(frozen[0])


def test_a_damaged_bundle_is_one_line_for_nightly(setup, tmp_path):
    opts = setup("{value: 4}", n_trials=1)
    run_search(opts, NullReporter())
    bad = tmp_path / "exports" / "s" / "v1"
    bad.mkdir(parents=True)
    (bad / "bundle.json").write_text("{not json")
    res = cli_invoke(["nightly", "--study", "s", "--run-dir", str(opts.run_dir), "--exports", str(tmp_path / "exports"),
                      "--reports", str(tmp_path / "nightly"), "--new-trials", "0", "--confirm", "2"])
    assert res.exit_code == 2 and "bundle.json" in res.stderr and len(res.stderr.strip().splitlines()) == 1


def test_interrupt_between_batched_trials_leaves_none_running(setup, monkeypatch):
    """Ctrl-C while the front is updated between two trials of a batch: the asked, unstarted ones are
    interrupted (re-enqueued), none stays RUNNING."""
    import autotune.search.study as study_mod

    opts = setup("{choices: [2, 4]}", n_trials=3)
    opts.space_file.write_text(opts.space_file.read_text().replace("batch: 1}", "batch: 3}"))
    real, calls = study_mod.update_front, []

    def interrupted_once(*a, **k):
        calls.append(1)
        if len(calls) == 1:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(study_mod, "update_front", interrupted_once)
    with pytest.raises(KeyboardInterrupt):
        run_search(opts, NullReporter())
    trials = _study(opts).trials
    states = [t.state.name for t in trials]
    assert states.count("COMPLETE") == 1 and "RUNNING" not in states and states.count("WAITING") == 2, states
    assert all(t.user_attrs.get("interrupted") for t in trials if t.state.name == "FAIL")


def test_runs_a_broken_store_left_running_are_repaired_on_resume(setup):
    """MLflow lost the end of a trial (the store broke) while Optuna kept it: the next search logs the metrics
    Optuna kept and ends the run, instead of leaving it RUNNING forever."""
    opts = setup("{choices: [2, 4]}", n_trials=1)
    run_search(opts, NullReporter())
    client, runs = _mlflow_runs(opts)
    [child] = [r for r in runs if r.data.tags.get("autotune.role") == "trial"]
    client.update_run(child.info.run_id, status="RUNNING")
    opts.n_trials = 2
    run_search(opts, NullReporter())
    repaired = client.get_run(child.info.run_id)
    assert repaired.info.status == "FINISHED" and repaired.data.tags.get("autotune.repaired") == "true"
    assert repaired.data.metrics["p95_task_ms"] > 0
    _no_running(opts)


def test_an_unresponsive_store_is_not_waited_for_twice(monkeypatch):
    """After one call failed slowly (a frozen server), later calls fail at once: the exit stays bounded."""
    import autotune.tracking.mlflow_tracker as mt
    from autotune.errors import TrackingError

    monkeypatch.setattr(mt, "UNRESPONSIVE_S", 0.05)
    tracker = mt.MlflowTracker.__new__(mt.MlflowTracker)
    tracker.uri, tracker.unresponsive, tracker._open, tracker.parent_id = "http://x", False, set(), "p"
    calls = []

    class Frozen:
        def set_tag(self, *a):
            calls.append(a)
            time.sleep(0.1)
            raise TimeoutError("read timed out")

    tracker.client = Frozen()
    with pytest.raises(TrackingError):
        tracker.mark_interrupted("r1")
    started = time.monotonic()
    with pytest.raises(TrackingError, match="stopped answering"):
        tracker.mark_interrupted("r2")
    tracker.fail_open_runs()
    assert len(calls) == 1 and time.monotonic() - started < 0.05
