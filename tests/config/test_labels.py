"""Classification fields: `labels:` in the workload, label-restricted constraints (enum, regex, choice), and
validity that counts only a declared label."""

from __future__ import annotations

import json
import re
from types import SimpleNamespace

import pytest

from autotune.config.knobs import split_values
from autotune.config.workload import WorkloadConfig, load_workload
from autotune.errors import ConfigError, TrialRejected
from autotune.fmware import formats as F
from autotune.fmware.app import AppConfig, request
from autotune.fmware.runner import run_task
from autotune.loadgen.runner import app_config

LABELS = ("positive", "negative", "n/a (mixed)")
ITEM = {"id": "r1", "context": "Review: fine.", "task": "Classify.", "questions": {"sentiment": "Q-sentiment?",
                                                                                 "topic": "Q-topic?"}}
WL = ("name: w\ndataset: d.jsonl\nfields: [{name: sentiment, question: 'S?', labels: LABELS}]\n"
      "prompt: {context: '{text}', task: 'T'}\n")


def two_fields() -> WorkloadConfig:
    return WorkloadConfig.model_validate({"name": "w", "dataset": "d.jsonl", "prompt": {"task": "T"}, "fields": [
        {"name": "sentiment", "question": "S?", "labels": list(LABELS)}, {"name": "topic", "question": "T?"}]})


def labelled(**kw) -> AppConfig:
    return AppConfig(fields=("sentiment",), output_format=kw.pop("output_format", "minimal"),
                     labels={"sentiment": LABELS}, **kw)


def replying(text: str):
    def chat(req):
        return {"ok": True, "text": text, "prompt_tokens": 1, "completion_tokens": 1}
    return chat


def wl_error(write, tmp_path, labels: str, ref: str = "positive") -> str:
    (tmp_path / "d.jsonl").write_text(json.dumps({"id": "a", "input": {"text": "x"}, "reference": {"sentiment": ref}})
                                      + "\n")
    path = write("wl.yaml", WL.replace("LABELS", labels))
    with pytest.raises(ConfigError) as exc:
        load_workload(path)
    msg = str(exc.value)
    assert "\n" not in msg and msg.startswith(str(tmp_path))
    return msg


def test_labels_load_and_bad_labels_are_one_line_config_errors(write, tmp_path):
    (tmp_path / "d.jsonl").write_text('{"id": "a", "input": {"text": "x"}, "reference": {"sentiment": "neg"}}\n')
    wl = load_workload(write("ok.yaml", WL.replace("LABELS", "[pos, neg]")))
    assert wl.fields[0].labels == ["pos", "neg"]
    assert "fields.0.labels: must list at least one label, got []" in wl_error(write, tmp_path, "[]")
    assert "fields.0.labels: labels must be distinct, 'pos' repeats" in wl_error(write, tmp_path, "[pos, neg, pos]")
    assert "label True is a bool, not a string (quote it in YAML)" in wl_error(write, tmp_path, "[yes, no]")
    assert "label ' pos' must be non-empty, on one line" in wl_error(write, tmp_path, "[' pos', neg]")
    assert "label '' must be non-empty" in wl_error(write, tmp_path, "['', neg]")
    assert "fields.0.labels: must be a list of labels, got 'pos'" in wl_error(write, tmp_path, "pos")
    msg = wl_error(write, tmp_path, "[pos, neg]", ref="Pos")
    assert msg.endswith("d.jsonl: item 'a': reference.sentiment: must be one of the field's labels ['pos', 'neg'], "
                        "got 'Pos'")


def test_few_shot_examples_must_answer_every_field_with_a_label(write, tmp_path):
    (tmp_path / "d.jsonl").write_text('{"id": "a", "input": {"text": "x"}, "reference": {"sentiment": "pos"}}\n')
    wl = WL.replace("LABELS", "[pos, neg]") + "few_shot: s.jsonl\n"
    (tmp_path / "s.jsonl").write_text('{"id": "s1", "input": {"text": "y"}, "reference": {}}\n')
    with pytest.raises(ConfigError, match=r"s.jsonl: item 's1': reference.sentiment: is missing"):
        load_workload(write("wl.yaml", wl))
    (tmp_path / "s.jsonl").write_text('{"id": "s1", "input": {"text": "y"}, "reference": {"sentiment": "meh"}}\n')
    with pytest.raises(ConfigError, match=r"reference.sentiment: must be one of the field's labels"):
        load_workload(write("wl.yaml", wl))
    (tmp_path / "s.jsonl").write_text('{"id": "s1", "input": {"text": "y"}, "reference": {"sentiment": "neg"}}\n')
    assert load_workload(write("wl.yaml", wl)).few_shot == "s.jsonl"


@pytest.mark.parametrize("name", F.FORMATS)
def test_regex_restricts_a_labelled_field_to_its_labels(name):
    fmt = F.get(name)
    pattern = fmt.regex(["sentiment", "topic"], {"sentiment": LABELS})
    for lb in LABELS:
        text = fmt.render({"sentiment": lb, "topic": "books"})
        assert re.fullmatch(pattern, text), text
        assert fmt.parse(text, ["sentiment", "topic"])["sentiment"] == lb
    for wrong in ("Positive", "positive!", "neutral", "n/a"):
        assert not re.fullmatch(pattern, fmt.render({"sentiment": wrong, "topic": "books"})), wrong
    assert fmt.regex(["sentiment", "topic"]) == fmt.regex(["sentiment", "topic"], {}), "no labels: free values"


def test_json_schema_enum_and_request_building():
    two = AppConfig(fields=("sentiment", "topic"), labels={"sentiment": LABELS}, constrained="json_schema")
    props = request(two, [], ["sentiment", "topic"])["structured_outputs"]["json"]["properties"]
    assert props["sentiment"] == {"type": "string", "enum": list(LABELS)}
    assert props["topic"] == {"type": "string", "maxLength": 80}
    regex = request(AppConfig(fields=("sentiment",), labels={"sentiment": LABELS}, constrained="regex",
                              output_format="yaml"), [], ["sentiment"])["structured_outputs"]["regex"]
    assert regex == r"sentiment: (?:positive|negative|n/a \(mixed\))"
    assert request(labelled(constrained="choice"), [], ["sentiment"])["structured_outputs"] == \
        {"choice": list(LABELS)}
    text = labelled(constrained="choice", output_format="text")
    choices = request(text, [], ["sentiment"])["structured_outputs"]["choice"]
    assert choices[0] == "The sentiment is positive."
    assert [text.parse(c, ["sentiment"])["sentiment"] for c in choices] == list(LABELS)


def test_choice_is_refused_unless_every_call_asks_one_labelled_field():
    assert labelled(constrained="choice").problem() is None
    assert labelled(constrained="choice", output_format="json").problem() == \
        "constrained=choice needs output_format minimal or text, got json"
    multi = dict(fields=("sentiment", "topic"), constrained="choice", output_format="minimal",
                 labels={"sentiment": LABELS, "topic": ("books", "films")})
    assert AppConfig(**multi).problem().startswith("constrained=choice needs one field per FM call")
    assert AppConfig(**multi, architecture="judge").problem().startswith("constrained=choice needs one field")
    assert AppConfig(**multi, architecture="parallel").problem() is None
    assert AppConfig(**{**multi, "labels": {"sentiment": LABELS}}, architecture="parallel").problem() == \
        "constrained=choice needs `labels` on every field, topic has none"


def test_choice_for_several_fields_is_an_unsupported_trial_before_any_request(tmp_path):
    workload = two_fields()
    config = split_values({"constrained": "choice", "output_format": "minimal"})
    inputs = SimpleNamespace(workload=workload, examples=[])
    with pytest.raises(TrialRejected, match="constrained=choice needs") as exc:
        from autotune.search.trial import run_trial
        run_trial(config, inputs, keeper=None, trial_dir=tmp_path / "t", phase=lambda _: None)  # no engine touched
    assert exc.value.reason == "unsupported"


def test_labels_travel_to_the_load_generator_and_into_the_prompt():
    workload = two_fields()
    app = AppConfig.from_dict(json.loads(json.dumps(app_config(workload, split_values({}).client, []))))
    assert app.labels == {"sentiment": LABELS}
    seen = []
    run_task(app, ITEM, lambda req: seen.append(req) or {"ok": True, "text": "{}", "prompt_tokens": 1,
                                                          "completion_tokens": 1})
    assert "The sentiment must be exactly one of: positive, negative, n/a (mixed)." in \
        seen[0]["messages"][-1]["content"]


def test_validity_counts_only_a_declared_label():
    ok = run_task(labelled(), ITEM, replying("positive"))
    assert ok["parses"][0]["valid"] is True and ok["answer"] == {"sentiment": "positive"}
    for reply in ("Positive", "neutral", "great"):  # parses as minimal, but is no declared label
        rec = run_task(labelled(), ITEM, replying(reply))
        assert rec["parses"][0] == {"node": "parse.all", "valid": False, "reasked": False, "repair": "failed"}
        assert rec["answer"] == {} and not rec["complete"]
    free = run_task(AppConfig(fields=("sentiment",), output_format="minimal"), ITEM, replying("Positive"))
    assert free["parses"][0]["valid"] is True, "a field without labels keeps the old rule: it parses"


def test_cpu_repair_maps_near_misses_onto_labels_and_drops_the_rest():
    for reply in ("Positive", " POSITIVE. ", "The sentiment is positive.", '"positive"'):
        rec = run_task(labelled(repair="cpu"), ITEM, replying(reply))
        assert rec["answer"] == {"sentiment": "positive"}, reply
        assert rec["parses"][0]["valid"] is False and rec["parses"][0]["repair"] == "cpu", reply
    rec = run_task(labelled(repair="cpu"), ITEM, replying("neutral"))
    assert rec["answer"] == {} and rec["parses"][0]["repair"] == "failed"


def test_reask_tells_the_model_the_labels():
    replies = iter(["Positive", "positive"])
    seen = []

    def chat(req):
        seen.append(req)
        return {"ok": True, "text": next(replies), "prompt_tokens": 1, "completion_tokens": 1}

    rec = run_task(labelled(repair="reask"), ITEM, chat)
    assert rec["answer"] == {"sentiment": "positive"} and rec["parses"][0]["repair"] == "reask"
    assert "sentiment must be exactly one of positive, negative, n/a (mixed); got 'Positive'" in \
        seen[1]["messages"][-1]["content"]
