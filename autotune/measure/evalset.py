"""Quality on one fixed evaluation set: every trial of a study is graded on the same items, each item once.

The set is chosen by the workload (all tasks, or `eval_items` of them drawn by `seed`), so it is identical for
every trial and comparisons between trials pair by item. An item's score comes from its first attempt at a load
the config holds: the fixed window (warmup included), or the capacity levels that held the SLA. A failed,
abandoned or timed-out attempt there scores 0. An item those loads did not reach takes its first *answered*
attempt at a level that failed the SLA (at temperature 0 the answer does not depend on the load; a miss there is
the overload's, not the config's). Each capacity level walks the items earlier levels left ungraded first, so
the levels together usually cover the set. Items still without a grade are run once each by a completion pass at a
moderate closed-loop load, so the set is always complete and how many items needed the pass is recorded.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autotune.loadgen import LoadConfig

# attempts at these phases were made at the load being measured; cooldown tasks are not (only fast ones are kept)
GRADED_PHASES = ("warmup", "measure")


def eval_ids(task_ids: list[str], n: int | None, seed: int) -> list[str]:
    """The study's evaluation items, in dataset order: all, or `n` drawn by `seed` (same for every trial)."""
    if n is None or n >= len(task_ids):
        return list(task_ids)
    chosen = set(random.Random(seed).sample(range(len(task_ids)), n))
    return [t for i, t in enumerate(task_ids) if i in chosen]


@dataclass
class ItemScores:
    """id -> (score, source) for the evaluation set; `missing` lists the ids no attempt covered yet."""

    ids: list[str]
    scores: dict[str, float] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)
    failed: set[str] = field(default_factory=set)

    @property
    def missing(self) -> list[str]:
        return [i for i in self.ids if i not in self.scores]

    def take(self, tasks: Iterable[dict[str, Any]], source: str, phases: tuple[str, ...] = GRADED_PHASES,
             answered_only: bool = False) -> None:
        """First attempt per item wins (earliest send); failures count 0, or are skipped with `answered_only` (a
        level over the SLA: its misses are the overload's). Call in load order (operating load first)."""
        wanted = set(self.ids)
        for t in sorted(tasks, key=lambda t: t.get("send_ts") or 0.0):
            item = t.get("id")
            if item not in wanted or item in self.scores or t.get("phase") not in phases:
                continue
            ok = bool(t.get("ok"))
            if answered_only and not ok:
                continue
            self.scores[item] = float(t.get("score", 0.0)) if ok else 0.0
            self.sources[item] = source
            if not ok:
                self.failed.add(item)

    def fill_missing(self) -> None:
        """Items no attempt reached score 0 and are marked `missing`: counted against the config, never dropped."""
        for item in self.missing:
            self.scores[item] = 0.0
            self.sources[item] = "missing"
            self.failed.add(item)

    def mean(self) -> float:
        return sum(self.scores.values()) / len(self.scores) if self.scores else math.nan

    def write(self, path: Path) -> Path:
        """`item_scores.jsonl`: one line per evaluation item, {id, score, ok, source}."""
        path.write_text("".join(json.dumps({"id": i, "score": self.scores.get(i), "ok": i not in self.failed
                                            and i in self.scores, "source": self.sources.get(i, "missing")}) + "\n"
                                for i in self.ids))
        return path


def completion_config(base_cfg: LoadConfig, tasks: list[dict[str, Any]], missing: list[str], users: int,
                      request_timeout_s: float, out_dir: Path) -> LoadConfig:
    """Load config of the completion pass: each missing item exactly once (`once`), `users` closed-loop users."""
    by_id = {t["id"]: t for t in tasks}
    todo = [by_id[i] for i in missing]
    users = max(1, min(users, len(todo)))
    rounds = math.ceil(len(todo) / users) + 1
    return base_cfg.with_(tasks=todo, once=True, processes=1, arrival={"mode": "closed", "users": users},
                          warmup_s=0.0, duration_s=min(86_400.0, request_timeout_s * rounds), drain_timeout_s=5.0,
                          out_dir=str(out_dir))
