"""`autotune export`: pick a recommended trial by policy and write a versioned, deployable bundle.

Bundle (exports/<study>/v<N>/): vllm-args.json, serve.sh (safely quoted argv, PORT overridable),
app-config.yaml (architecture, format, constraint, repair, cache, prompts), helm-values.yaml (the shape of the
vLLM production-stack chart's values), bundle.json (everything machine-readable) and README.md (measured
metrics with bootstrap confidence intervals, replicas for a target rate, provenance).
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import yaml

from autotune import __version__
from autotune.config import KNOWN_METRICS, SpaceConfig, TrialConfig, load_space, load_workload
from autotune.errors import ConfigError
from autotune.pareto import front_indices
from autotune.secrets import carries_secret, reference, scrub_obj

SCHEMA_VERSION = 1
POLICIES = ("fastest-within-quality", "cheapest-within-sla", "best-quality-within-sla", "knee")
EXPR = re.compile(r"^\s*(min|max)\s+(\w+)(?:\s+where\s+(.+?))?\s*$", re.I)
COND = re.compile(r"^\s*(\w+)\s*(<=|>=|<|>|==)\s*(-?[\d.]+(?:e-?\d+)?)\s*$", re.I)


@dataclass
class Candidate:
    number: int
    params: dict[str, Any]
    metrics: dict[str, float]
    values: list[float]
    user_attrs: dict[str, Any]


def candidates(study: optuna.Study, space: SpaceConfig | None = None) -> list[Candidate]:
    """What a policy may recommend: one candidate per measured, feasible config at full fidelity (a screened-out
    trial or a re-proposal never). Each carries its config's merged estimate (the confirmation windows once
    confirmed) under its first trial's number."""
    from autotune.objectives import evaluate
    from autotune.search import study_points

    if space is None:
        if "space_file" not in study.user_attrs:  # a study from before recorded spaces: its trials as they are
            return [Candidate(t.number, t.params, t.user_attrs.get("metrics", {}), list(t.values), t.user_attrs)
                    for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE
                    and t.user_attrs.get("feasible", True) and t.user_attrs.get("fidelity", "full") == "full"]
        space = load_space(study.user_attrs["space_file"], check_paths=False)
    out = []
    for cp in study_points(study, space):
        metrics = cp.metrics()
        ev = evaluate(metrics, space.objectives, space.constraints)
        if ev.feasible and not cp.confirm_failed:  # a config that could not be re-measured is not recommended
            first = cp.trials[0]
            out.append(Candidate(cp.number, first.params, metrics, ev.values,
                                 {**first.user_attrs, "config_key": cp.key, "trials": [t.number for t in cp.trials]}))
    return out


def parse_expression(expr: str) -> tuple[str, str, list[tuple[str, str, float]]]:
    """'min p95_task_ms where quality >= 0.6 and task_error_rate <= 0.01' -> (min, metric, conditions)."""
    m = EXPR.match(expr)
    if not m:
        raise ValueError("a policy expression reads `min|max METRIC [where METRIC OP NUMBER [and ...]]`")
    goal, metric, where = m.group(1).lower(), m.group(2), m.group(3)
    conds = []
    for part in re.split(r"\s+and\s+", where or "", flags=re.I) if where else []:
        c = COND.match(part)
        if not c:
            raise ValueError(f"cannot read condition {part!r}; use METRIC OP NUMBER with OP one of <= >= < > ==")
        conds.append((c.group(1), c.group(2), float(c.group(3))))
    for name in [metric, *[c[0] for c in conds]]:
        if name not in KNOWN_METRICS:
            raise ValueError(f"unknown metric {name!r}; known: {sorted(KNOWN_METRICS)}")
    return goal, metric, conds


def _holds(x: float | None, op: str, v: float) -> bool:
    if x is None or math.isnan(x):
        return False
    return {"<=": x <= v, ">=": x >= v, "<": x < v, ">": x > v, "==": x == v}[op]


def pick(cands: list[Candidate], space: SpaceConfig, policy: str, min_quality: float | None = None,
         min_sla: float = 0.95) -> tuple[Candidate, str]:
    """(chosen trial, the rule it was chosen by, in words). Raises ValueError when nothing qualifies."""
    if not cands:
        raise ValueError("the study has no complete, feasible trial")
    best_q = max(c.metrics.get("quality", 0.0) for c in cands)
    q = min_quality if min_quality is not None else round(0.9 * best_q, 4)
    sla = f"task_sla_attainment >= {min_sla:g}"
    expr = {
        "fastest-within-quality": f"min p95_task_ms where quality >= {q:g}",
        "cheapest-within-sla": f"min usd_per_1k_tasks where {sla}",
        "best-quality-within-sla": f"max quality where {sla}",
    }.get(policy)
    if policy == "knee":
        return _knee(cands, space), "knee: the front member closest to the ideal point (pymoo ASF, equal weights)"
    goal, metric, conds = parse_expression(expr or policy)
    ok = [c for c in cands if all(_holds(c.metrics.get(m), op, v) for m, op, v in conds)
          and not math.isnan(c.metrics.get(metric, math.nan))]
    if not ok:
        raise ValueError(f"no trial satisfies `{expr or policy}`")
    chosen = (min if goal == "min" else max)(ok, key=lambda c: c.metrics[metric])
    return chosen, expr or policy


def _knee(cands: list[Candidate], space: SpaceConfig) -> Candidate:
    from pymoo.decomposition.asf import ASF

    directions = [o.direction for o in space.objectives]
    front = [cands[i] for i in front_indices([c.values for c in cands], directions)]
    F = np.array([[v if d == "minimize" else -v for v, d in zip(c.values, directions, strict=True)] for c in front])
    span = np.where(F.max(0) - F.min(0) > 0, F.max(0) - F.min(0), 1.0)
    norm = (F - F.min(0)) / span
    scores = ASF().do(norm, np.full(F.shape[1], 1.0 / F.shape[1]))
    return front[int(np.argmin(scores))]


def measured_tasks(path: Path) -> list[dict[str, Any]]:
    """A trial's completed tasks of the measurement window (none when the file is missing)."""
    from autotune.loadgen import read_jsonl

    return [t for t in read_jsonl(path, missing_ok=True) if t.get("phase") == "measure" and t.get("ok")]


def replicas_for(target_rate: float | None, metrics: dict[str, float], headroom: float) -> tuple[int | None, str]:
    """(replicas, the basis in words). Capacity trials: ceil(target / (capacity x headroom)), each replica run
    at `headroom` of the load it carries within SLA. Fixed-load trials can only use the goodput measured at
    their fixed load, and the basis says so: that is not capacity."""
    capacity = metrics.get("capacity_tps")
    if capacity is not None and capacity == capacity:
        per, basis = capacity * headroom, f"capacity at SLA {capacity:.3g} tasks/s x headroom {headroom:g}"
    else:
        per = metrics.get("task_goodput_tps", math.nan)
        basis = f"goodput {per:.3g} tasks/s measured at the workload's fixed load (not capacity)"
    if not target_rate:
        return None, basis
    if not per or math.isnan(per) or per <= 0:
        raise ValueError("the chosen trial held the SLA at no load: cannot size replicas for a target rate")
    return max(1, math.ceil(target_rate / per - 1e-9)), basis


def deploy_env(engine, server) -> tuple[dict[str, str], list[str]]:
    """(the engine environment as the bundle states it, the variables the deployment must provide). A secret
    (a secret-looking name, or a `${NAME}` reference) is written as `${NAME}`, never as its value."""
    env: dict[str, str] = {}
    required: list[str] = []
    for key, value in engine.env.items():
        name = reference(value) or (key if carries_secret(key, value) else None)
        if name is None:
            env[key] = value
        else:
            env[key] = "${" + name + "}"
            required.append(name)
    if engine.device == "cpu" and server.kv_cache_space_gb is not None:
        env["VLLM_CPU_KVCACHE_SPACE"] = f"{server.kv_cache_space_gb:g}"
    return env, sorted(set(required))


def serve_script(argv: list[str], env: dict[str, str]) -> str:
    """A bash script that execs the engine: every argument shlex-quoted, PORT/HOST overridable; a `${NAME}` value
    is read from the deployment's environment and the script stops with a message when it is unset."""
    args = list(argv)
    parts = []
    for i, a in enumerate(args):
        if i > 0 and args[i - 1] == "--port":
            parts.append('"$PORT"')
        elif i > 0 and args[i - 1] == "--host":
            parts.append('"$HOST"')
        else:
            parts.append(shlex.quote(a))
    lines = ["#!/usr/bin/env bash", "# Generated by autotune export: starts the recommended engine.",
             "set -euo pipefail", 'PORT="${PORT:-8000}"', 'HOST="${HOST:-127.0.0.1}"']
    for k, v in sorted(env.items()):
        name = reference(v)
        lines.append(f'export {k}="${{{name}:?set {name} (a secret: autotune never writes its value)}}"' if name
                     else f"export {k}={shlex.quote(v)}")
    grouped: list[str] = []  # one "--flag value" per line
    for part, raw in zip(parts, args, strict=True):
        if grouped and grouped[-1].startswith("--") and " " not in grouped[-1] and not raw.startswith("--"):
            grouped[-1] += " " + part
        else:
            grouped.append(part)
    lines.append("exec " + " \\\n  ".join(grouped))
    return "\n".join(lines) + "\n"


CPU_IMAGE = "public.ecr.aws/q9t5s3a7/vllm-cpu-release-repo"  # vLLM's CPU release images
SET_BY_CHART = {"--model", "--port", "--host", "--dtype", "--max-model-len"}  # modelURL, the service, vllmConfig


def helm_values(config: TrialConfig, argv: list[str], replicas: int | None, engine_version: str,
                env: dict[str, str] | None = None, device: str = "cuda") -> dict[str, Any]:
    """Values in the shape of the vLLM production-stack Helm chart (servingEngineSpec.modelSpec) that deploy what
    was measured: the image of the engine's device, the model path or id vLLM loaded (`--model`), the engine
    environment (secrets from a Kubernetes Secret `<name>-secrets` by key, never inline), and every other flag
    once, in extraArgs."""
    s = config.server
    name = re.sub(r"[^a-z0-9-]", "-", s.model.lower().rsplit("/", 1)[-1])[:50]
    env_list = [{"name": k, "valueFrom": {"secretKeyRef": {"name": f"{name}-secrets", "key": reference(v)}}}
                if reference(v) else {"name": k, "value": v} for k, v in sorted((env or {}).items())]
    model = argv[argv.index("--model") + 1] if "--model" in argv else s.model
    start = next((i for i, a in enumerate(argv) if a.startswith("--")), len(argv))  # after the launcher
    extra: list[str] = []
    skip = False
    for a in argv[start:]:
        if skip:
            skip = False
        elif a in SET_BY_CHART:
            skip = True
        else:
            extra.append(a)
    tag = f"v{engine_version}" if engine_version[:1].isdigit() else "latest"
    vllm_config: dict[str, Any] = {"extraArgs": extra}
    if s.max_model_len is not None:
        vllm_config["maxModelLen"] = s.max_model_len
    if s.dtype != "auto":
        vllm_config["dtype"] = s.dtype
    return {"servingEngineSpec": {"modelSpec": [{
        "name": name, "repository": CPU_IMAGE if device == "cpu" else "vllm/vllm-openai", "tag": tag,
        "modelURL": model, "replicaCount": replicas or 1, "vllmConfig": vllm_config,
        **({"env": env_list} if env_list else {}),
    }]}}


def next_version(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    taken = [int(p.name[1:]) for p in root.glob("v*") if p.name[1:].isdigit()]
    return root / f"v{max(taken, default=0) + 1}"


def export_bundle(study: optuna.Study, policy: str, out_root: Path, target_rate: float | None = None,
                  min_quality: float | None = None, min_sla: float = 0.95,
                  headroom: float = 0.8) -> tuple[Path, Candidate, str]:
    from autotune.engines import build_argv
    from autotune.loadgen import app_config
    from autotune.workloads import few_shot_examples

    attrs = study.user_attrs
    if "space_file" not in attrs:
        raise ConfigError(study.study_name, "study", "has no recorded space file (made by an older autotune); "
                          "rerun `autotune search` once to record it", show_value=False)
    space = load_space(attrs["space_file"], check_paths=False)
    try:
        chosen, rule = pick(candidates(study, space), space, policy, min_quality, min_sla)
    except ValueError as exc:
        raise ConfigError(study.study_name, "--pick", str(exc), policy) from None
    if chosen.user_attrs.get("fidelity", "full") != "full":  # candidates() never offers one: a guard, not a path
        raise ConfigError(study.study_name, f"trial {chosen.number}", "was screened out after a short window and "
                          "cannot be exported", show_value=False)
    trial_dir = Path(attrs.get("run_dir", "runs")) / study.study_name / f"trial-{chosen.number:04d}"
    config = TrialConfig.model_validate(json.loads((trial_dir / "resolved-config.json").read_text()))
    server = config.server
    argv = build_argv(server, space.engine, 8000)
    if "/" in argv[0] and Path(argv[0]).exists():  # a relative interpreter path must work from anywhere
        argv[0] = str(Path(argv[0]).absolute())  # not resolve(): a venv's python is a symlink that must stay one
    env, required_env = deploy_env(space.engine, server)
    workload_file = Path(attrs["workload_file"])
    workload = load_workload(workload_file, host_checks=False)
    app = app_config(workload, config.client, few_shot_examples(workload, workload_file))
    app_yaml = {**app, "api_key_env": _api_key_env(workload, space), "prompt": workload.prompt.model_dump(),
                "questions": {f.name: f.question for f in workload.fields}}
    try:
        replicas, basis = replicas_for(target_rate, chosen.metrics, headroom)
    except ValueError as exc:
        raise ConfigError(study.study_name, "--target-rate", str(exc), target_rate) from None
    cis, fresh = window_cis(study, space, chosen)
    engine_version = chosen.user_attrs.get("engine_version", "unknown")
    out = next_version(out_root / study.study_name)
    out.mkdir(parents=True)
    bundle = {
        "schema_version": SCHEMA_VERSION, "autotune_version": __version__, "engine_version": engine_version,
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "study": study.study_name,
        "trial": chosen.number, "mlflow_run_id": chosen.user_attrs.get("mlflow_run_id"),
        "policy": policy, "rule": rule, "hardware": space.hardware.model_dump(),
        "server": server.model_dump(), "client": config.client.model_dump(), "engine_argv": argv, "engine_env": env,
        "required_env": required_env,
        "metrics": chosen.metrics, "confidence_intervals_95": {k: list(v) for k, v in cis.items()},
        # where one fresh launch of this config will measure (benchmarks/calibration.py checks both)
        "prediction_intervals_95": {k: list(v) for k, v in fresh.items()},
        "windows": int(chosen.metrics.get("windows", 1)), "trials": chosen.user_attrs.get("trials", [chosen.number]),
        "target_rate_tps": target_rate, "replicas": replicas, "replicas_basis": basis, "headroom": headroom,
        "sla": space.sla.model_dump(),
    }
    # every file passes the redaction policy as data, before it is serialised (a mask must not break JSON,
    # YAML or shell quoting), whatever a future field carries
    argv, env, bundle, app_yaml = scrub_obj(argv), scrub_obj(env), scrub_obj(bundle), scrub_obj(app_yaml)
    files = {
        "bundle.json": json.dumps(bundle, indent=2, default=str), "vllm-args.json": json.dumps(argv, indent=2),
        "serve.sh": serve_script(argv, env),
        "app-config.yaml": yaml.safe_dump(app_yaml, sort_keys=False, allow_unicode=True),
        "helm-values.yaml": yaml.safe_dump(helm_values(config, argv, replicas, engine_version, env,
                                                       space.engine.device), sort_keys=False),
        "README.md": _readme(bundle, cis),
    }
    for name, text in files.items():
        (out / name).write_text(text)
    for name in ("latency_load.png", "capacity_levels.json"):  # the curve the capacity was read from
        if (trial_dir / name).is_file():
            (out / name).write_bytes((trial_dir / name).read_bytes())
    (out / "serve.sh").chmod(0o755)
    return out, chosen, rule


def window_cis(study, space: SpaceConfig, chosen: Candidate) -> tuple[dict[str, tuple[float, float, float]],
                                                                       dict[str, tuple[float, float, float]]]:
    """metric -> (value, low, high), twice: where the config's mean lies, and where one more fresh launch will
    measure (the window metrics' prediction interval; quality keeps its interval: a fresh launch grades the same
    items). Window objectives from the study's pooled window-to-window noise (NaN bounds when no config was
    measured twice), quality from a bootstrap over the evaluation items."""
    from autotune.search import intervals, resolution, study_noise, study_points, study_workload

    points = study_points(study, space)
    cp = next((p for p in points if p.key == chosen.user_attrs.get("config_key")), None)
    if cp is None:
        return {}, {}
    res = resolution(space, study_workload(study))
    noise = study_noise(points, space, res)
    m = chosen.metrics
    both = []
    for fresh in (False, True):
        iv = intervals(cp, space, noise, res, fresh=fresh)
        out = {k: (iv[k], iv[f"{k}_low"], iv[f"{k}_high"]) for k in iv if f"{k}_low" in iv}
        if "quality_ci_low" in m:
            out["quality"] = (m["quality"], m["quality_ci_low"], m["quality_ci_high"])
        both.append(out)
    return both[0], both[1]


def _api_key_env(workload, space: SpaceConfig) -> str | None:
    """The variable the application reads its bearer token from (the value is never written)."""
    if workload.api_key is not None:
        return reference(workload.api_key) or "AUTOTUNE_API_KEY"
    return "VLLM_API_KEY" if "VLLM_API_KEY" in space.engine.env else None


def _readme(b: dict[str, Any], cis: dict[str, tuple[float, float, float]]) -> str:
    m = b["metrics"]
    rows = []
    for key in ("p95_task_ms_at_load", "capacity_tps", "p95_task_ms", "mean_task_ms", "quality", "tasks_per_s",
                "task_goodput_tps", "task_sla_attainment", "fm_calls_per_task", "output_tokens_per_task",
                "p95_ttft_ms", "usd_per_1k_tasks", "validity_rate"):
        if key in cis:
            v, lo, hi = cis[key]
            _, plo, phi = b.get("prediction_intervals_95", {}).get(key, (v, math.nan, math.nan))
            rows.append(f"| {key} | {v:.4g} | " + (f"[{lo:.4g}, {hi:.4g}] | " if lo == lo else
                                                    "unknown: no config was measured twice (`--confirm`) | ")
                        + (f"[{plo:.4g}, {phi:.4g}] |" if plo == plo else "- |"))
        elif key in m:
            rows.append(f"| {key} | {m[key]:.4g} | - | - |")
    knobs = "\n".join(f"- `{k}`: {v}" for k, v in {**b["server"], **b["client"]}.items() if v is not None)
    secrets = ("\n## Secrets the deployment must provide\n" + "\n".join(f"- `{n}`" for n in b["required_env"])
               + "\n\nThey are referred to by name in `serve.sh`, `bundle.json` and `helm-values.yaml`; autotune "
               "never writes their values.\n") if b["required_env"] else ""
    sizing = (f"{b['replicas']} replica(s) for {b['target_rate_tps']:g} tasks/s, from the {b['replicas_basis']}."
              if b["replicas"] else f"Pass `--target-rate` to size replicas (basis: the {b['replicas_basis']}).")
    if "capacity_tps" in m:
        sla = b["sla"]
        sizing += (f"\n\nCapacity at SLA: **{m['capacity_tps']:.3g} tasks/s per replica**, the highest offered task "
                   f"rate at which at least {sla['attainment']:.0%} of tasks ended within {sla['task_ms']} ms (and "
                   "every call met its TTFT/TPOT limits where set), judged with a Wilson interval over each level. "
                   f"The p95 task latency was {m.get('p95_task_ms_at_load', math.nan):.4g} ms at the operating load of "
                   f"{m.get('operating_rate', math.nan):g} tasks/s.\n\n![latency-load curve](latency_load.png)\n\n"
                   "Every level is in `capacity_levels.json`.")
    return f"""# Recommended config: study `{b['study']}`, trial {b['trial']}

Chosen by `{b['policy']}` ({b['rule']}).

Start it: `PORT=8000 ./serve.sh` (the engine argv is also in `vllm-args.json`); the application settings
(architecture, format, constraint, repair, cache, prompts) are in `app-config.yaml`; Kubernetes values for
the vLLM production-stack chart in `helm-values.yaml`.

## Measured ({b['windows']} window(s): trials {', '.join(map(str, b['trials']))} plus confirmations; 95% intervals)

Intervals on latency, capacity and cost come from independent windows (window-to-window noise pooled over every
config of the study measured more than once); the quality interval is a bootstrap over the study's fixed
evaluation items, on which every config was graded.

| metric | value | 95% CI (the config's mean) | 95% PI (one fresh launch) |
|---|---|---|---|
{chr(10).join(rows)}

{sizing}

## Config
{knobs}
{secrets}
## Provenance
- autotune {b['autotune_version']}, vLLM {b['engine_version']}, hardware: {b['hardware']['name']}
  (${b['hardware']['usd_per_hour']}/h)
- study `{b['study']}`, trial {b['trial']}, MLflow run `{b['mlflow_run_id']}`, exported {b['created']}
- bundle schema {b['schema_version']}
"""
