"""Two `autotune search` workers share one study on a real PostgreSQL server (fake engine, real Locust, real
MLflow): no trial lost or duplicated, one front, one MLflow parent."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import optuna
import pytest

from autotune.search.front import front_rows
from tests.postgres import Postgres
from tests.stand_in import HERE

REPO = HERE.parent


@pytest.fixture(scope="module")
def postgres_url():
    pg = Postgres()
    url = pg.start()
    yield url
    pg.stop()


def test_both_url_forms_users_type_open_the_store(postgres_url):
    """`postgresql://` (psycopg 3, SQLAlchemy's default) and `postgresql+psycopg2://` reach the same server."""
    from autotune.stores import open_storage

    assert postgres_url.startswith("postgresql://")
    for url in (postgres_url, postgres_url.replace("postgresql://", "postgresql+psycopg2://")):
        storage = open_storage(url)
        optuna.create_study(storage=storage, study_name=f"probe-{url.split(':', 1)[0]}", load_if_exists=True)
        assert any(s.study_name.startswith("probe-") for s in optuna.get_all_study_summaries(storage))


def test_two_workers_share_a_study_on_postgres(postgres_url, tmp_path):
    (tmp_path / "items.jsonl").write_text("".join(json.dumps({
        "id": f"i{i}", "input": {"article": "Ada Lovelace, ada@example.org"},
        "reference": {"name": "Ada Lovelace", "email": "ada@example.org"}}) + "\n" for i in range(4)))
    (tmp_path / "wl.yaml").write_text(
        "name: w\ndataset: items.jsonl\nfields: [{name: email, question: 'E?'}, {name: name, question: 'N?'}]\n"
        "prompt: {context: '{article}', task: 'E and N'}\narrival: {mode: closed, users: 2}\n"
        "warmup_s: 0.3\nduration_s: 1.5\ndrain_timeout_s: 5\nmax_tokens: 40\n")
    space = tmp_path / "space.yaml"
    space.write_text(
        f"name: shared\nworkload: wl.yaml\nengine: {{command: [{sys.executable}, {HERE / 'fake_engine.py'}], "
        f"startup_timeout_s: 10, shutdown_timeout_s: 3}}\n"
        f"knobs:\n  model: {{value: {tmp_path}}}\n  max_num_seqs: {{choices: [2, 4, 8]}}\n"
        f"  output_format: {{choices: [json, yaml, minimal]}}\n"
        f"search: {{n_trials: 6, sampler: random, batch: 1, noise_repeats: 0}}\n")
    run_dir = tmp_path / "runs"
    workers = [subprocess.Popen([sys.executable, "-m", "autotune", "search", "--space", str(space), "--run-dir",
                                 str(run_dir), "--storage", postgres_url, "--seed", str(seed)], cwd=REPO,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for seed in (1, 2)]
    outputs = [w.communicate(timeout=300)[0] for w in workers]
    assert [w.returncode for w in workers] == [0, 0], "\n----\n".join(outputs)

    study = optuna.load_study(study_name="shared", storage=postgres_url)
    trials = [t for t in study.trials if t.user_attrs.get("duplicate_of") is None]  # re-proposals are not measured
    assert 6 <= len(trials) <= 7, "each worker stops once the shared study reaches n_trials"
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    assert len({t.number for t in trials}) == len(trials)
    pids = {t.user_attrs["owner"]["pid"] for t in trials}
    assert len(pids) == 2, "both workers measured trials"

    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{run_dir / 'mlflow.db'}")
    exp = client.get_experiment_by_name("shared")
    runs = client.search_runs([exp.experiment_id])
    parents = [r for r in runs if r.data.tags.get("autotune.role") == "study"]
    children = [r for r in runs if r.data.tags.get("autotune.role") == "trial"]
    assert len(parents) == 1
    assert sorted(int(c.data.tags["autotune.trial"]) for c in children) == sorted(t.number for t in trials)
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parents[0].info.run_id}
    assert {c.info.run_id for c in children} == {t.user_attrs["mlflow_run_id"] for t in trials}

    # the front both workers recorded equals the front of the same trials computed in one place
    from autotune.config.space import load_space

    expected = {r["trial"] for r in front_rows(study, load_space(space, check_paths=False))[1]}
    logged = json.loads(Path(client.download_artifacts(parents[0].info.run_id, "pareto_front.json")).read_text())
    assert {r["trial"] for r in logged["front"]} == expected
