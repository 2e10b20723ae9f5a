"""The two sides of benchmarks/outcome.py: `vllm serve` defaults (the minimum that starts) and the recommended
config (from an exported bundle or a finished study), each as a TrialConfig."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from autotune.config.knobs import KNOBS, ClientConfig, ServerConfig, TrialConfig
from autotune.config.space import SpaceConfig, load_space


def space_value(space: SpaceConfig, name: str) -> Any:
    """A knob's fixed `value` in the space, else its value in the first `search.enqueue` config, else None."""
    spec = space.knobs.get(name)
    if spec is not None and spec.value is not None:
        return spec.value
    return space.search.enqueue[0].get(name) if space.search.enqueue else None


def baseline_client(space: SpaceConfig, overrides: dict[str, Any] | None = None) -> ClientConfig:
    """The application a user starts from: the first `search.enqueue` config's client knobs with the space's fixed
    client values (a conditional knob only when its `when` holds), ClientConfig's defaults for the rest; then
    `overrides`."""
    params = dict(space.search.enqueue[0]) if space.search.enqueue else {}
    values: dict[str, Any] = {}
    for name, spec in space.knobs.items():
        if KNOBS[name].part != "client":
            continue
        seen = {**params, **values}
        if not all(seen.get(dep) in allowed for dep, allowed in (spec.when or {}).items()):
            continue
        if spec.value is not None:
            values[name] = spec.value
        elif name in params:
            values[name] = params[name]
    return ClientConfig(**{**values, **(overrides or {})})


def naive_client(space: SpaceConfig, naive: dict[str, Any], overrides: dict[str, Any] | None = None) -> ClientConfig:
    """The application as a developer first writes it: the space's fixed client values (a conditional knob only
    when its `when` holds), then `naive` (one call, JSON, zero-shot, nothing added), then `overrides`."""
    values: dict[str, Any] = {}
    for name, spec in space.knobs.items():
        if KNOBS[name].part == "client" and spec.value is not None and all(
                {**values, **naive}.get(dep) in allowed for dep, allowed in (spec.when or {}).items()):
            values[name] = spec.value
    return ClientConfig(**{**values, **naive, **(overrides or {})})


def defaults_server(space: SpaceConfig, model: str | None = None, fallback: ServerConfig | None = None) -> ServerConfig:
    """vLLM's defaults: only the model (no seed either). On CPU, `kv_cache_space_gb` from the space (or the
    recommended config): vLLM-CPU does not start without VLLM_CPU_KVCACHE_SPACE."""
    model = model or space_value(space, "model") or (fallback.model if fallback else None)
    if not model:
        raise SystemExit("outcome: the space fixes no model and enqueues none: pass --baseline-model")
    kv = None
    if space.engine.device == "cpu":
        kv = space_value(space, "kv_cache_space_gb") or (fallback.kv_cache_space_gb if fallback else None)
        if kv is None:
            raise SystemExit("outcome: on CPU the defaults side needs kv_cache_space_gb (VLLM_CPU_KVCACHE_SPACE) "
                             "and neither the space nor the recommended config sets it")
    return ServerConfig(model=str(model), seed=None, kv_cache_space_gb=kv)


def parse_client(text: str | None) -> dict[str, Any]:
    """`k=v,k=v` of client knobs, typed and checked against the knob registry."""
    from autotune.ops.nightly import parse_forced

    if not text:
        return {}
    values = parse_forced([p.strip() for p in text.split(",") if p.strip()])
    server = [k for k in values if KNOBS[k].part != "client"]
    if server:
        raise SystemExit(f"outcome: --baseline-client takes client knobs only, got {server}")
    return values


def from_bundle(path: Path) -> tuple[TrialConfig, str]:
    bundle = json.loads((path / "bundle.json").read_text())
    config = TrialConfig(server=ServerConfig(**bundle["server"]), client=ClientConfig(**bundle["client"]))
    return config, (f"bundle {path} (study `{bundle.get('study')}`, trial {bundle.get('trial')}, picked by "
                    f"`{bundle.get('policy')}`: {bundle.get('rule')})")


def from_study(name: str, run_dir: Path, storage: str | None, policy: str, min_quality: float | None,
               space: SpaceConfig | None) -> tuple[TrialConfig, str, Any]:
    """The config `autotune export --pick POLICY` would export from the study (export's candidates + pick)."""
    from autotune.errors import ConfigError
    from autotune.ops import candidates, pick
    from autotune.stores import default_storage, load_study

    study = load_study(name, storage or default_storage(run_dir.resolve()), "--storage" if storage else "--run-dir")
    if space is None:
        space = load_space(study.user_attrs["space_file"], check_paths=False)
    try:
        chosen, rule = pick(candidates(study, space), space, policy, min_quality)
    except ValueError as exc:
        raise ConfigError(name, "--pick", str(exc), policy) from None
    trial_dir = Path(study.user_attrs.get("run_dir", run_dir)) / name / f"trial-{chosen.number:04d}"
    config = TrialConfig.model_validate(json.loads((trial_dir / "resolved-config.json").read_text()))
    return config, f"study `{name}`, trial {chosen.number}, picked by `{policy}` ({rule})", study


