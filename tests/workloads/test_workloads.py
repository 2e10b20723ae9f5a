"""Arithmetic generation and scoring, task rendering and near-duplicate traffic."""

from __future__ import annotations

import json
import re

from autotune.config.workload import load_workload
from autotune.loadgen.records import read_jsonl
from autotune.workloads import arithmetic
from autotune.workloads.dataset import few_shot_examples, render_tasks
from tests.conftest import REPO


def test_arithmetic_is_deterministic_exact_and_shipped():
    assert arithmetic.generate(30, seed=4) == arithmetic.generate(30, seed=4) != arithmetic.generate(30, seed=5)
    shipped = read_jsonl(REPO / "workloads/arithmetic/items.jsonl")
    assert len(shipped) >= 200 and shipped == arithmetic.generate(len(shipped), seed=0)
    for it in shipped:
        assert int(it["reference"]["answer"]) > 0 and int(it["reference"]["step1"]) > 0


def test_arithmetic_answers_check_out_by_hand():
    it = next(i for i in arithmetic.generate(60) if "marbles" in i["input"]["problem"])
    a, b, c = (int(x) for x in re.findall(r"\d+", it["input"]["problem"]))
    assert it["reference"] == {"step1": str(b * c), "answer": str(a + b * c)}


def test_arithmetic_score():
    ref = {"step1": "12", "answer": "1234"}
    assert arithmetic.score({"answer": "The answer is 1,234 apples."}, ref) == 1.0
    assert arithmetic.score({"answer": "1234.0"}, ref) == 1.0
    assert arithmetic.score({"answer": "1235"}, ref) == 0.0
    assert arithmetic.score({}, ref) == 0.0


def test_tasks_render_templates_and_paraphrased_duplicates():
    wl_file = REPO / "workloads/extraction.yaml"
    wl = load_workload(wl_file)
    items = read_jsonl(wl.dataset_path(wl_file))
    tasks, refs = render_tasks(wl, items)
    originals = [t for t in tasks if not t["id"].endswith("~p")]
    dups = [t for t in tasks if t["id"].endswith("~p")]
    assert len(originals) == len(items) and 0.2 < len(dups) / len(items) < 0.4  # share 0.3
    for d in dups:
        orig = next(t for t in originals if t["id"] == d["id"][:-2])
        assert d["context"] != orig["context"] and d["context"].startswith("Article: ")
        assert refs[d["id"]] == refs[orig["id"]]
    assert originals[0]["questions"]["email"] == "What is the main person's e-mail address?"
    assert tasks == render_tasks(wl, items)[0], "deterministic"
    shots = few_shot_examples(wl, wl_file)
    assert len(shots) == 2 and set(shots[0]["answer"]) == {"name", "email", "address"}
    assert not {s["context"] for s in shots} & {t["context"] for t in tasks}
    assert json.dumps(tasks)  # serialisable for the load generator
