"""A deterministic fake chat function for DAG/architecture tests (no server): fixed latency per call, replies
in the app's format with VALUES, optionally with chatter (fixed on reask) or RETRY from the judge."""

from __future__ import annotations

import threading
import time

from autotune.fmware.app import AppConfig

FIELDS = ("email", "name", "address")
VALUES = {"email": "ada@example.org", "name": "Ada Lovelace", "address": "1 Analytical Way"}
ITEM = {"id": "i1", "context": "Article: Ada Lovelace lives at 1 Analytical Way, ada@example.org.",
        "task": "TASK", "questions": {f: f"Q-{f}?" for f in FIELDS}}


class FakeChat:
    def __init__(self, app: AppConfig, delay: float = 0.05, chatter: bool = False, judge_retries: int = 0):
        self.app, self.delay, self.chatter, self.judge_retries = app, delay, chatter, judge_retries
        self.calls: list[dict] = []
        self.active = 0
        self.max_active = 0
        self._lock = threading.Lock()

    def __call__(self, req: dict) -> dict:
        with self._lock:
            self.calls.append(req)
            self.active += 1
            self.max_active = max(self.max_active, self.active)
        time.sleep(self.delay)
        with self._lock:
            self.active -= 1
        last = req["messages"][-1]["content"]
        fields = [f for f in FIELDS if f"Q-{f}?" in last] or list(self.app.fields)
        text = self.app.fmt.render({f: VALUES[f] for f in fields})
        if "Candidate A" in last and self.judge_retries > 0:
            with self._lock:
                self.judge_retries -= 1
            text = "RETRY"
        elif self.chatter and not last.startswith("That reply could not be parsed"):
            text = "Sure! Here you go:\n" + text + "\nHope this helps."
        return {"ok": True, "text": text, "ttft_s": self.delay / 2, "prompt_tokens": 10 * len(req["messages"]),
                "completion_tokens": len(text) // 4, "node": req.get("node")}


def app(**kw) -> AppConfig:
    return AppConfig(fields=FIELDS, **kw)
