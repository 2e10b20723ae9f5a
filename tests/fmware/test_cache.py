"""Semantic cache: hit/miss with the real all-MiniLM-L6-v2 embedder, and inside the task DAG."""

from __future__ import annotations

import random

import numpy as np
import pytest

from autotune.fmware.cache import SemanticCache, minilm_embedder
from autotune.fmware.runner import run_task
from autotune.workloads.dataset import paraphrase
from autotune.workloads.extraction import generate
from tests.fmware_fakes import ITEM, VALUES, FakeChat, app


@pytest.fixture(scope="module")
def embed():
    return minilm_embedder()


def test_real_embedder_hits_paraphrases_and_misses_other_articles(embed):
    items = generate(6, seed=3)
    texts = [f"Article: {it['input']['article']}" for it in items]
    cache = SemanticCache(embed, threshold=0.9)
    for i, t in enumerate(texts[:3]):
        cache.store(t, {"name": str(i)}, {"n": i})
    rng = random.Random(0)
    for i, t in enumerate(texts[:3]):
        hit = cache.lookup(paraphrase(t, rng))
        assert hit is not None and hit["values"] == {"name": str(i)} and hit["similarity"] >= 0.9
    for t in texts[3:]:
        assert cache.lookup(t) is None, "a different person's article must not hit at 0.9"
    assert cache.lookups == 6 and cache.hits == 3
    v = embed(texts[0])
    assert v.shape == (384,) and np.linalg.norm(v) == pytest.approx(1.0, abs=1e-4)


def test_loose_threshold_returns_look_alikes(embed):
    """Same template, another person: a loose threshold hits - the false hits quality must reveal."""
    a = "Article: Local news: Maya Nakamura won the regional chess final. Contact: maya@post.example.net."
    b = "Article: Local news: Rosa Weber won the regional chess final. Contact: rosa@mail.test."
    cache = SemanticCache(embed, threshold=0.6)
    cache.store(a, {"name": "Maya Nakamura"}, {"n": 0})
    assert cache.lookup(b)["values"] == {"name": "Maya Nakamura"}
    assert SemanticCache(embed, threshold=0.99).lookup(b) is None


def test_cache_in_the_dag_skips_every_fm_call_on_a_hit():
    vec = np.array([1.0, 0.0])
    cache = SemanticCache(lambda text: vec, threshold=0.95)
    a = app(architecture="parallel")
    chat = FakeChat(a, 0.01)
    first = run_task(a, {**ITEM, "source": {"n": 0}}, chat, cache)
    assert not first["cache_hit"] and first["fm_calls"] == 3 and len(cache) == 1
    second = run_task(a, {**ITEM, "source": {"n": 1}}, chat, cache)
    assert second["cache_hit"] and second["fm_calls"] == 0 and second["answer"] == VALUES
    assert second["cache"]["source"] == {"n": 0} and second["critical_path"] == ["cache.lookup", "aggregate"]
    assert len(chat.calls) == 3


def test_incomplete_answers_are_not_cached():
    cache = SemanticCache(lambda text: np.array([1.0]), threshold=0.9)
    cache.store("x", {}, {"n": 0})
    assert len(cache) == 0
    with pytest.raises(ValueError):
        SemanticCache(lambda t: np.array([1.0]), threshold=0)
