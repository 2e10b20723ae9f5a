"""Bad input, every command: one line naming the file, the key, the rule and the value, a non-zero exit, no
traceback, nothing created. Grow the table with new cases of every class that turns up."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from types import SimpleNamespace

from tests.conftest import cli_invoke
from tests.stand_in import ITEM


def _bad_files(tmp_path: Path) -> SimpleNamespace:
    """Every bad file and option the cases below name, written into tmp_path."""
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
    return SimpleNamespace(**{k: v for k, v in locals().items() if not callable(v)})


def _bad_inputs(tmp_path: Path) -> list[tuple[str, list[str], str]]:
    """(case, argv, text the one line must contain)."""
    f = _bad_files(tmp_path)
    return [
        ("knob step not positive", ["validate", str(f.sp_step)], "knobs.max_num_seqs.step"),
        ("constraint value NaN", ["validate", str(f.sp_nan)], "constraints.0.value"),
        ("study name leaves the run dir", ["validate", str(f.sp_name)], "name"),
        ("engine host does not resolve", ["validate", str(f.sp_host)], "engine.host"),
        ("infinite window", ["validate", str(f.wl_inf)], "duration_s"),
        ("template attribute the input lacks", ["validate", str(f.wl_attr)], "prompt.context"),
        ("YAML nested too deeply", ["validate", str(f.deep)], "nested too deeply"),
        ("space repeats a knob", ["validate", str(f.dup_knob)],
         "knobs.max_num_seqs: duplicate key on line 5 (first on line 4)"),
        ("space repeats a top-level key", ["validate", str(f.dup_top)], "sla: duplicate key on line 4"),
        ("space repeats a key inside a list item", ["validate", str(f.dup_list)], "constraints.0.value: duplicate"),
        ("workload repeats a nested key", ["validate", str(f.wl_dupkey)], "capacity.start_rate: duplicate key"),
        ("dataset item repeats a key", ["validate", str(f.wl_dupjson)], "line 3: article: duplicate key"),
        ("secret value of the wrong type", ["validate", str(f.sp_secret)], "engine.env.HF_TOKEN"),
        ("search: study name with a slash", ["search", "--space", str(f.sp_ok), "--study-name", "a/b", *f.rd],
         "--study-name"),
        ("search: in-memory storage", ["search", "--space", str(f.sp_ok), "--storage", "sqlite://", *f.rd],
         "in-memory"),
        ("nightly: forced value of the wrong type", ["nightly", "--study", "x", "--force", "max_num_seqs=abc"],
         "must be a int"),
        ("dataset not UTF-8 on a later line", ["validate", str(f.wl_utf8)], "line 3: is not UTF-8"),
        ("dataset not JSON on a later line", ["validate", str(f.wl_json)], "line 3: is not JSON"),
        ("dataset repeats an id", ["validate", str(f.wl_dup)], "line 2: repeats the id of line 1"),
        ("item lacks a template input", ["validate", str(f.wl_input)], "line 3 lacks"),
        ("empty dataset", ["validate", str(f.wl_empty)], "holds no items"),
        ("YAML not UTF-8", ["validate", str(f.binary)], str(f.binary)),
        ("config is a directory", ["validate", str(f.tmp_path)], "file does not exist"),
        ("engine interpreter is a directory", ["validate", str(f.sp_dir)], "must be a file, not a directory"),
        ("engine interpreter not executable", ["validate", str(f.sp_noexec)], "is not executable"),
        ("env reference unset", ["validate", str(f.sp_ref)], "AT_TEST_UNSET_VARIABLE"),
        ("search: dataset bad on a later line", ["search", "--space", str(f.sp_badline), "--run-dir",
                                                 str(f.tmp_path / "runs-badline")], "line 3: is not JSON"),
        ("search: negative timeout", ["search", "--timeout", "-5"], "--timeout"),
        ("search: zero trials", ["search", "--n-trials", "0"], "--n-trials"),
        ("search: negative seed", ["search", "--seed", "-1"], "--seed"),
        ("search: malformed storage URL", ["search", "--space", str(f.sp_ok), "--storage", "not a url", *f.rd],
         "--storage"),
        ("search: storage driver missing", ["search", "--space", str(f.sp_ok), "--storage",
                                            "postgresql+pg8000://u@127.0.0.1:1/db", *f.rd], "no module 'pg8000'"),
        ("search: storage with a bad scheme", ["search", "--space", str(f.sp_ok), "--storage", "nosuchdb://x/y", *f.rd],
         "--storage"),
        ("search: unwritable storage", ["search", "--space", str(f.sp_ok), "--storage",
                                        "sqlite:////proc/autotune-test/optuna.db", *f.rd], "cannot write"),
        ("search: unwritable MLflow store", ["search", "--space", str(f.sp_ok), "--mlflow-uri",
                                             "sqlite:////proc/autotune-test/mlflow.db", *f.rd], "--mlflow-uri"),
        ("search: run dir is a file", ["search", "--space", str(f.sp_ok), "--run-dir", str(f.a_file)], "--run-dir"),
        ("search: unknown sampler", ["search", "--space", str(f.sp_ok), "--sampler", "bogus", *f.rd], "sampler"),
        ("search: unknown option", ["search", "--no-such-option"], "--no-such-option"),
        ("export: missing study", ["export", "--study", "ghost-study", *f.typo], "ghost-study"),
        ("export: negative target rate", ["export", "--study", "x", "--target-rate", "-1"], "--target-rate"),
        ("export: attainment above 1", ["export", "--study", "x", "--min-sla", "2"], "--min-sla"),
        ("nightly: missing study", ["nightly", "--study", "ghost-study", *f.typo], "ghost-study"),
        ("nightly: malformed storage", ["nightly", "--study", "x", "--storage", "sqlite:/bad"], "--storage"),
        ("nightly: alpha 0", ["nightly", "--study", "x", "--alpha", "0"], "--alpha"),
        ("nightly: unknown forced knob", ["nightly", "--study", "x", "--force", "bogus=1"], "--force"),
        ("report: missing study", ["report", "--study", "ghost-study", *f.typo], "ghost-study"),
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


