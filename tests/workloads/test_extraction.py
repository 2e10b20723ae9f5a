"""The extraction task: deterministic generation and the scorer."""

from __future__ import annotations

import json

from autotune.workloads.extraction import generate, normalise, score
from tests.conftest import REPO

REF = {"name": "Ada Lovelace", "email": "ada@example.org", "address": "1 Analytical Way, London 12345"}


def test_generation_is_deterministic_and_shipped_file_matches():
    assert generate(20, seed=1) == generate(20, seed=1) != generate(20, seed=2)
    shipped = [json.loads(x) for x in (REPO / "workloads/extraction/items.jsonl").read_text().splitlines()]
    assert len(shipped) >= 200 and shipped == generate(len(shipped), seed=0)


def test_reference_fields_appear_in_the_article():
    for it in generate(30):
        for value in it["reference"].values():
            assert value in it["input"]["article"]


def test_score_exact():
    assert score(dict(REF), REF) == 1.0


def test_score_normalises_case_space_and_punctuation():
    got = {"name": "ada  lovelace", "email": "ADA@example.org.", "address": "1 Analytical Way London 12345"}
    assert score(got, REF) == 1.0


def test_score_partial_and_wrong():
    assert score({"name": "Ada Lovelace", "email": "x@y.z"}, REF) == 1 / 3
    assert score({}, REF) == 0.0


def test_normalise():
    assert normalise("  1 Oak St.,  Springfield ") == "1 oak st springfield"
