"""The stand-in search the fast tests share: a fake OpenAI-compatible engine (fake_engine.py), its workload
and dataset, and readers of the Optuna and MLflow stores a search wrote. The `setup` fixture is in conftest.py."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import optuna

from autotune.search.study import SearchOptions

HERE = Path(__file__).parent  # tests/: fake_engine.py lives here
# one dataset item the fake engine answers (one field)
ITEM = {"id": "a", "input": {"article": "Ada Lovelace, ada@example.org"}, "reference": {"name": "Ada Lovelace"}}


def files_under(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]


class NullReporter:
    def __init__(self):
        self.finished: list[tuple[int, str | None]] = []

    def search_started(self, *a): ...
    def trial_started(self, *a): ...
    def phase(self, *a): ...
    def front(self, *a): ...

    def trial_finished(self, number, metrics, error):
        self.finished.append((number, error))


EXTRACTION_WORKLOAD = """\
        name: w
        dataset: items.jsonl
        fields:
          - {name: email, question: "What is the e-mail?"}
          - {name: name, question: "What is the name?"}
          - {name: address, question: "What is the address?"}
        prompt: {context: "{article}", task: "Give e-mail, name and address."}
"""  # the head of a workload on `write_items`' dataset (the fake engine answers it correctly)


REAL_EXTRACTION = f"""\
        name: e2e
        dataset: {HERE.parent / 'workloads/extraction/items.jsonl'}
        fields:
          - {{name: email, question: "What is the main person's e-mail address?"}}
          - {{name: name, question: "What is the main person's full name?"}}
        prompt:
          system: "You extract contact details from news articles."
          context: "Article: {{article}}"
          task: "Give the main person's e-mail address and full name."
"""  # the head of a workload on the shipped extraction dataset (two fields), for the real-engine tests


FIXED_LOAD = """\
        arrival: {mode: closed, users: 2}
        warmup_s: 0.5
        duration_s: 2
        drain_timeout_s: 5
        max_tokens: 40
"""  # the tail of a stand-in workload: a short closed-loop window (the `setup` fixture's)

REAL_ENGINE_KNOBS = """\
          model: {value: smollm2-135m}
          kv_cache_space_gb: {value: 1}
          max_model_len: {value: 512}
          dtype: {value: float32}
          enforce_eager: {value: true}
          block_size: {value: 32}
"""  # the real-engine tests' server part: the bundled model on a small fp32 eager engine (under `knobs:`)


def write_items(folder: Path, n: int) -> None:
    (folder / "items.jsonl").write_text("".join(json.dumps({
        "id": f"i{i}", "input": {"article": "Ada Lovelace, ada@example.org, 1 Analytical Way"},
        "reference": {"name": "Ada Lovelace", "email": "ada@example.org", "address": "1 Analytical Way"},
    }) + "\n" for i in range(n)))


def _study(opts: SearchOptions, name: str = "s"):
    return optuna.load_study(study_name=name, storage=f"sqlite:///{(opts.run_dir / 'optuna.db').resolve()}")


def _mlflow_runs(opts: SearchOptions, name: str = "s"):
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{(opts.run_dir / 'mlflow.db').resolve()}")
    exp = client.get_experiment_by_name(name)
    return client, client.search_runs([exp.experiment_id])


class Freezer(NullReporter):
    """SIGSTOPs the engine's process group once the load has run against it for a while in the window."""

    def __init__(self, run_dir: Path, after_s: float):
        super().__init__()
        self.run_dir, self.after_s = run_dir, after_s
        self.measuring_since: float | None = None
        self.frozen_at: float | None = None
        self.finished_at: float | None = None
        self.pgid = 0

    def phase(self, name: str) -> None:
        if name != "measuring" or self.frozen_at is not None:
            return
        self.measuring_since = self.measuring_since or time.monotonic()
        if time.monotonic() - self.measuring_since >= self.after_s:
            [entry] = [json.loads(p.read_text()) for p in (self.run_dir / "engines").glob("*.json")]
            self.pgid = entry["pgid"]
            os.killpg(self.pgid, signal.SIGSTOP)
            self.frozen_at = time.monotonic()

    def trial_finished(self, number, metrics, error):
        super().trial_finished(number, metrics, error)
        self.finished_at = time.monotonic()
