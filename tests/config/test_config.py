"""Config validation: one-line messages naming file, key, rule and value."""

from __future__ import annotations

import pytest

from autotune.config.space import load_space
from autotune.config.workload import load_workload
from autotune.errors import ConfigError
from tests.conftest import REPO

ENGINE = "engine: {python: /bin/sh}\n"


def space_error(write, body: str, check_paths: bool = True) -> str:
    path = write("space.yaml", "name: t\n" + body)
    with pytest.raises(ConfigError) as exc:
        load_space(path, check_paths=check_paths)
    msg = str(exc.value)
    assert "\n" not in msg and msg.startswith(str(path))
    return msg


def test_valid_space_loads(write):
    path = write("space.yaml", """\
        name: ok
        engine: {python: /bin/sh}
        knobs:
          max_num_seqs: {low: 1, high: 8, log: true}
          spec_method: {choices: [none, ngram]}
          num_speculative_tokens: {low: 2, high: 4, when: {spec_method: [ngram]}}
        """)
    space = load_space(path)
    assert space.knobs["num_speculative_tokens"].when == {"spec_method": ["ngram"]}
    assert [o.metric for o in space.objectives] == ["p95_task_ms", "usd_per_1k_tasks", "quality"]


def test_malformed_yaml(write):
    path = write("bad.yaml", "name: [unclosed\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: malformed YAML at line \d+"):
        load_space(path)


def test_unknown_knob(write):
    msg = space_error(write, ENGINE + "knobs:\n  max_num_seq: {low: 1, high: 4}\n")
    assert "knobs" in msg and "unknown knob 'max_num_seq'" in msg and "max_num_seqs" in msg


def test_inverted_range(write):
    msg = space_error(write, ENGINE + "knobs:\n  max_num_seqs: {low: 8, high: 2}\n")
    assert "knobs.max_num_seqs" in msg and "empty or inverted range: low 8 > high 2" in msg


def test_value_below_knob_minimum(write):
    msg = space_error(write, ENGINE + "knobs:\n  max_num_seqs: {low: 0, high: 2}\n")
    assert "must be >= 1, got 0" in msg


def test_bad_choice_value(write):
    msg = space_error(write, ENGINE + "knobs:\n  dtype: {choices: [float32, fp8x]}\n")
    assert "must be one of" in msg and "'fp8x'" in msg


def test_empty_choices(write):
    assert "`choices` must not be empty" in space_error(write, ENGINE + "knobs:\n  dtype: {choices: []}\n")


def test_unknown_objective(write):
    msg = space_error(write, ENGINE + "objectives:\n  - {metric: p95_latency, direction: minimize}\n")
    assert "objectives.0.metric" in msg and "unknown objective metric" in msg and "'p95_latency'" in msg


def test_unknown_key_anywhere(write):
    msg = space_error(write, ENGINE + "hardware: {usd_per_hr: 1}\n")
    assert "hardware.usd_per_hr: unknown key" in msg


def test_when_must_reference_earlier_knob(write):
    knob = "  num_speculative_tokens: {low: 1, high: 2, when: {spec_method: [ngram]}}\n"
    msg = space_error(write, ENGINE + "knobs:\n" + knob)
    assert "`when` must name a knob listed before it" in msg


def test_engine_interpreter_must_exist(write):
    msg = space_error(write, "engine: {python: /nope/bin/python}\n")
    assert "engine.python: engine interpreter does not exist, got '/nope/bin/python'" in msg


def test_engine_command_must_be_on_path(write):
    msg = space_error(write, "engine: {command: [no-such-vllm-binary, serve]}\n")
    assert "engine.command: engine command not found on PATH" in msg


def test_missing_file():
    with pytest.raises(ConfigError, match="nope.yaml: file does not exist"):
        load_space("nope.yaml")


def test_model_path_that_does_not_exist(write):
    from autotune.search.inputs import check_models

    path = write("space.yaml", "name: t\n" + ENGINE + "knobs:\n  model: {choices: [./no/such/model]}\n")
    space = load_space(path)
    with pytest.raises(ConfigError, match=r"knobs.model: model path does not exist, got './no/such/model'"):
        check_models(space, str(path))


WL = "name: w\ndataset: d.jsonl\nfields: [{name: a, question: 'A?'}]\nprompt: {context: '{text}', task: 'T'}\n"


def test_workload_validation(write, tmp_path):
    (tmp_path / "d.jsonl").write_text('{"id": "a", "input": {"text": "x"}, "reference": {"a": "1"}}\n')
    ok = write("wl.yaml", WL + "arrival: {mode: poisson, rate: 2}\n")
    assert load_workload(ok).arrival.rate == 2
    bad = write("wl2.yaml", WL + "arrival: {mode: poisson}\n")
    with pytest.raises(ConfigError, match="arrival: mode poisson needs `rate`"):
        load_workload(bad)
    missing = write("wl3.yaml", WL.replace("d.jsonl", "nope.jsonl"))
    with pytest.raises(ConfigError, match="dataset: dataset file does not exist"):
        load_workload(missing)
    typo = write("wl4.yaml", WL.replace("'{text}'", "'Q: {txt}'"))
    with pytest.raises(ConfigError, match=r"prompt.context: names an input that d.jsonl line 1 lacks; it has \['te"):
        load_workload(typo)
    typo_q = write("wl5.yaml", WL.replace("'A?'", "'{nope}?'"))
    with pytest.raises(ConfigError, match=r"fields.a.question: names an input"):
        load_workload(typo_q)
    no_fields = write("wl6.yaml", WL.replace("fields: [{name: a, question: 'A?'}]\n", ""))
    with pytest.raises(ConfigError, match=r"wl6.yaml: fields: is required"):
        load_workload(no_fields)
    bad_scorer = write("wl7.yaml", WL + "scorer: no_such_module:score\n")
    with pytest.raises(ConfigError, match=r"scorer: cannot import .*got 'no_such_module:score'"):
        load_workload(bad_scorer)
    bad_shots = write("wl8.yaml", WL + "few_shot: none.jsonl\n")
    with pytest.raises(ConfigError, match=r"few_shot: few-shot file does not exist"):
        load_workload(bad_shots)


def test_bring_your_own_scorer(write, tmp_path):
    (tmp_path / "d.jsonl").write_text('{"id": "a", "input": {"text": "x"}, "reference": {"a": "1"}}\n')
    (tmp_path / "myscore.py").write_text("def score(answer, reference):\n    return float(answer.get('a') == "
                                         "reference['a'])\n")
    wl = write("wl.yaml", WL + "scorer: myscore:score\n")
    from autotune.config.scorers import resolve_scorer, safe_score

    fn = resolve_scorer(load_workload(wl).scorer, tmp_path)
    assert safe_score(fn, {"a": "1"}, {"a": "1"}) == 1.0 and safe_score(fn, {}, {"a": "1"}) == 0.0
    assert safe_score(lambda a, r: 1 / 0, {}, {}) == 0.0  # a crashing scorer scores 0, the trial goes on


def test_shipped_configs_validate():
    from tests.conftest import REPO

    spaces = list((REPO / "search_spaces").rglob("*.yaml"))
    assert len(spaces) >= 6
    for f in spaces:
        load_space(f, check_paths=False)
    load_workload(REPO / "workloads" / "extraction.yaml")
    load_workload(REPO / "workloads" / "arithmetic.yaml")


def test_enqueued_configs_must_fit_the_space(write):
    base = "name: t\nengine: {python: /bin/sh}\nknobs:\n  output_format: {choices: [json, yaml]}\n" \
           "  max_num_seqs: {low: 2, high: 8}\nsearch:\n  enqueue:\n"
    assert load_space(write("ok.yaml", base + "    - {output_format: yaml, max_num_seqs: 4}\n")).search.enqueue
    with pytest.raises(ConfigError, match=r"search.enqueue\[0\].output_format: 'xml' is not one of"):
        load_space(write("b1.yaml", base + "    - {output_format: xml}\n"))
    with pytest.raises(ConfigError, match=r"search.enqueue\[0\]: 'repair' is not a knob of this space"):
        load_space(write("b2.yaml", base + "    - {repair: cpu}\n"))
    with pytest.raises(ConfigError, match=r"outside \[2.0, 8.0\]"):
        load_space(write("b3.yaml", base + "    - {max_num_seqs: 64}\n"))


def test_gpu_space_builds_cuda_argv():
    from autotune.config.knobs import split_values
    from autotune.engines.vllm import build_argv

    space = load_space(REPO / "search_spaces/gpu-llama8b.yaml", check_paths=False)
    cfg = split_values({"model": "meta-llama/Llama-3.1-8B-Instruct", "quantization": "fp8", "max_num_seqs": 64,
                        "gpu_memory_utilization": 0.9, "spec_method": "draft_model", "num_speculative_tokens": 4,
                        "draft_model": "meta-llama/Llama-3.2-1B-Instruct", "architecture": "parallel"})
    argv = build_argv(cfg.server, space.engine, 8000)
    assert argv[:2] == ["vllm", "serve"] and "--gpu-memory-utilization" in argv
    assert argv[argv.index("--quantization") + 1] == "fp8"
    assert "draft" in argv[argv.index("--speculative-config") + 1]
    assert "architecture" not in " ".join(argv), "client knobs never reach the engine"
