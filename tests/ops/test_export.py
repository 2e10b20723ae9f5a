"""Policies, expressions, knee, replicas, serve.sh quoting; and a real bundle from a fake-engine study."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest
import yaml

from autotune.config.space import SpaceConfig
from autotune.ops.export import export_bundle, replicas_for, serve_script
from autotune.ops.policy import Candidate, parse_expression, pick
from autotune.search.study import run_search
from tests.conftest import cli_invoke
from tests.stand_in import NullReporter, _mlflow_runs, _study

SPACE = SpaceConfig.model_validate({"name": "x"})  # default objectives: p95_task_ms, usd_per_1k_tasks, quality


def cand(n, p95, usd, q, sla=1.0):
    return Candidate(n, {}, {"p95_task_ms": p95, "usd_per_1k_tasks": usd, "quality": q,
                             "task_sla_attainment": sla}, [p95, usd, q], {})


CANDS = [cand(0, 1000, 0.010, 0.40), cand(1, 2000, 0.020, 0.60), cand(2, 5000, 0.050, 0.62, sla=0.5),
         cand(3, 1500, 0.015, 0.58)]


def test_named_policies():
    assert pick(CANDS, SPACE, "fastest-within-quality", min_quality=0.59)[0].number == 1
    assert pick(CANDS, SPACE, "fastest-within-quality", min_quality=0.3)[0].number == 0
    assert pick(CANDS, SPACE, "cheapest-within-sla")[0].number == 0
    assert pick(CANDS, SPACE, "best-quality-within-sla")[0].number == 1  # trial 2 misses the SLA
    assert pick(CANDS, SPACE, "knee")[0].number in (1, 3)  # balanced, not an extreme


def _scored(n: int, usd: float, right: int, of: int = 40, p95: float = 1000.0) -> Candidate:
    """A candidate whose first `right` of `of` items score 1, the rest 0."""
    items = {f"i{i}": float(i < right) for i in range(of)}
    return Candidate(n, {}, {"p95_task_ms_at_load": p95, "usd_per_1k_tasks": usd, "capacity_tps": 1 / usd,
                             "quality": right / of}, [p95, usd, right / of], {}, items)


def test_the_default_pick_is_the_cheapest_not_distinguishably_worse_on_paired_quality():
    """Best: 30 of 40 right. 25 of 40 (5 discordant pairs, McNemar p = 0.06) stays; 20 of 40 (p = 0.002) goes,
    however cheap; a stated floor replaces the test."""
    best, close, bad = _scored(0, 0.050, 30), _scored(1, 0.030, 25), _scored(2, 0.010, 20)
    chosen, rule = pick([best, close, bad], SPACE, "cheapest-within-quality")
    assert chosen.number == 1, rule
    assert "not distinguishably worse than trial 0's" in rule and "1 of 3 configs excluded" in rule
    assert "trial 1 vs trial 0: paired quality difference -0.125" in rule and "mcnemar p = 0.062" in rule
    assert pick([best, close, bad], SPACE, "cheapest-within-quality", min_quality=0.5)[0].number == 2
    assert "the stated floor" in pick([best, close, bad], SPACE, "cheapest-within-quality", min_quality=0.5)[1]
    alone = pick([best, bad], SPACE, "cheapest-within-quality")
    assert alone[0].number == 0 and "the pick is the best on quality" in alone[1]
    fastest = pick([_scored(0, 0.05, 30, p95=900.0), _scored(1, 0.03, 25, p95=800.0), _scored(2, 0.01, 20, p95=1.0)],
                   SPACE, "fastest-within-quality")
    assert fastest[0].number == 1 and "min p95_task_ms_at_load" in fastest[1]
    unscored = Candidate(3, {}, {"usd_per_1k_tasks": 0.001, "capacity_tps": 1000.0, "quality": 0.9}, [], {})
    assert pick([best, unscored], SPACE, "cheapest-within-quality")[0].number == 3, "the best needs no test"
    untestable = Candidate(4, {}, {"usd_per_1k_tasks": 0.001, "capacity_tps": 1000.0, "quality": 0.7}, [], {})
    assert pick([best, untestable], SPACE, "cheapest-within-quality")[0].number == 0, "no items: not shown as good"


def test_expressions():
    assert parse_expression("min p95_task_ms where quality >= 0.6 and task_error_rate <= 0.01") == (
        "min", "p95_task_ms", [("quality", ">=", 0.6), ("task_error_rate", "<=", 0.01)])
    assert pick(CANDS, SPACE, "max quality where p95_task_ms < 1800")[0].number == 3
    with pytest.raises(ValueError, match="unknown metric 'qualty'"):
        parse_expression("min p95_task_ms where qualty >= 0.6")
    with pytest.raises(ValueError, match="min\\|max METRIC"):
        parse_expression("fastest please")
    with pytest.raises(ValueError, match="no trial satisfies"):
        pick(CANDS, SPACE, "min p95_task_ms where quality >= 0.99")


def test_replicas_and_quoting():
    cap = {"capacity_tps": 5.0, "task_goodput_tps": 0.9}
    assert replicas_for(100, cap, 0.8) == (25, "capacity at SLA 5 tasks/s x headroom 0.8")  # not 100 / 0.9
    assert replicas_for(None, cap, 0.8)[0] is None and replicas_for(1, cap, 1.0)[0] == 1
    fixed = replicas_for(10, {"task_goodput_tps": 3.0}, 0.8)
    assert fixed[0] == 4 and "not capacity" in fixed[1]
    with pytest.raises(ValueError):
        replicas_for(10, {"capacity_tps": 0.0}, 0.8)
    script = serve_script(["/x y/python", "-m", "vllm", "--host", "127.0.0.1", "--port", "8000",
                           "--speculative-config", '{"method": "ngram"}'], {"A": "b c"})
    assert "'/x y/python'" in script and '"$PORT"' in script and "export A='b c'" in script
    assert """'{"method": "ngram"}'""" in script


def test_bundle_from_a_study_starts_its_engine(setup, tmp_path):
    from autotune.search.noise_prior import write_prior

    opts = setup("{choices: [2, 4]}", n_trials=2, client="  output_format: {choices: [json, yaml]}")
    Path(opts.run_dir).mkdir(parents=True, exist_ok=True)  # the host's noise, measured before: the study adopts it
    write_prior(opts.run_dir, {"p95_task_ms_at_load": {"sd": 0.05, "df": 40, "log": True},
                               "p95_task_ms": {"sd": 0.05, "df": 40, "log": True}},
                {"name": "w", "level_s": 8.0}, "fake-0", "a test table")
    run_search(opts, NullReporter())
    study = _study(opts)
    assert study.user_attrs["noise_prior"]["source"] == "a test table"
    bundle, chosen, rule = export_bundle(study, "knee", tmp_path / "exports", target_rate=50.0)
    assert bundle.name == "v1" and bundle.parent.name == "s"
    assert {p.name for p in bundle.iterdir()} >= {"bundle.json", "vllm-args.json", "serve.sh", "app-config.yaml",
                                                   "helm-values.yaml", "README.md"}
    b = json.loads((bundle / "bundle.json").read_text())
    assert b["trial"] == chosen.number and b["schema_version"] == 1 and b["metrics"]["quality"] == 1.0
    assert b["replicas"] >= 1 and b["engine_version"] == "fake-0"
    app = yaml.safe_load((bundle / "app-config.yaml").read_text())
    assert app["output_format"] == chosen.params["output_format"] and app["fields"] == ["email", "name", "address"]
    helm = yaml.safe_load((bundle / "helm-values.yaml").read_text())
    assert helm["servingEngineSpec"]["modelSpec"][0]["replicaCount"] == b["replicas"]
    assert "95% CI" in (bundle / "README.md").read_text() and "one fresh launch" in (bundle / "README.md").read_text()
    assert set(b["prediction_intervals_95"]) == set(b["confidence_intervals_95"]) >= {"quality"}
    assert b["noise_prior"]["source"] == "a test table" and "a test table" in (bundle / "README.md").read_text()
    assert export_bundle(study, "cheapest-within-sla", tmp_path / "exports")[0].name == "v2"  # versioned
    default = export_bundle(study, "cheapest-within-quality", tmp_path / "exports")
    assert "paired quality not distinguishably worse" in default[2], default[2]

    port = "18777"
    proc = subprocess.Popen([str(bundle / "serve.sh")], env={**os.environ, "PORT": port}, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        else:
            raise AssertionError("serve.sh did not start the engine")
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(10)


def test_cli_export_tags_the_mlflow_run(setup, tmp_path):

    opts = setup("{choices: [2, 4]}", n_trials=2)
    run_search(opts, NullReporter())
    res = cli_invoke(["export", "--study", "s", "--run-dir", str(opts.run_dir), "--pick",
                                   "min p95_task_ms where quality >= 0.5", "--out", str(tmp_path / "ex")])
    assert res.exit_code == 0, res.output
    client, runs = _mlflow_runs(opts)
    tagged = [r for r in runs if r.data.tags.get("autotune.recommended") == "true"]
    assert len(tagged) == 1
    assert any(a.path == "bundle" for a in client.list_artifacts(tagged[0].info.run_id))
    bad = cli_invoke(["export", "--study", "s", "--run-dir", str(opts.run_dir), "--pick", "fastest"])
    assert bad.exit_code == 2 and "--pick" in bad.output and "Traceback" not in bad.output


@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_helm_values_deploy_what_was_measured(device):
    """The image follows the engine's device, the model is the path or id vLLM loaded, the engine env is carried
    (secrets by name), and no flag is given twice (dtype and max-model-len live in vllmConfig only)."""
    from autotune.config.knobs import ClientConfig, ServerConfig, TrialConfig
    from autotune.config.space import EngineConfig
    from autotune.engines.vllm import build_argv
    from autotune.ops.export import deploy_env, helm_values

    engine = EngineConfig(device=device, python="/usr/bin/python3", env={"HF_TOKEN": "${HF_TOKEN}", "A": "1"})
    server = ServerConfig(model="/models/m", dtype="float32", max_model_len=1024, max_num_seqs=8,
                          kv_cache_space_gb=1 if device == "cpu" else None)
    argv = build_argv(server, engine, 8000)
    env, required = deploy_env(engine, server)
    spec = helm_values(TrialConfig(server=server, client=ClientConfig()), argv, 3, "0.32.0", env,
                       device)["servingEngineSpec"]["modelSpec"][0]
    assert spec["repository"] == ("vllm/vllm-openai" if device == "cuda" else
                                  "public.ecr.aws/q9t5s3a7/vllm-cpu-release-repo") and spec["tag"] == "v0.32.0"
    assert spec["modelURL"] == "/models/m" and spec["replicaCount"] == 3
    assert spec["vllmConfig"]["dtype"] == "float32" and spec["vllmConfig"]["maxModelLen"] == 1024
    extra = spec["vllmConfig"]["extraArgs"]
    assert not {"--dtype", "--max-model-len", "--model", "--port", "--host", "-m"} & set(extra)
    assert extra[extra.index("--max-num-seqs") + 1] == "8" and len(extra) == len(set(a for a in extra
                                                                                    if a.startswith("--"))) * 2
    names = {e["name"]: e for e in spec["env"]}
    assert names["HF_TOKEN"]["valueFrom"]["secretKeyRef"]["key"] == "HF_TOKEN" and names["A"]["value"] == "1"
    assert ("VLLM_CPU_KVCACHE_SPACE" in names) == (device == "cpu") and required == ["HF_TOKEN"]
