"""A model per node: each FM role's calls go where its `route_<role>` knob says, the space's `engine` or one of its
named `endpoints` (APIs). The load generator gets each route (url, model, the variable its key is in) and the
keys through its environment; an endpoint is checked (it lists the model) the first time a trial routes to it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from autotune.config import ClientConfig, ServerConfig
from autotune.engines import APIKeeper, endpoint_key
from autotune.errors import EngineLaunchError, TrialRejected
from autotune.fmware import ROLES, roles_of
from autotune.secrets import expand


def routed_names(client: ClientConfig) -> dict[str, str]:
    """role -> endpoint name, for every role of the application sent away from the engine (and `overflow`, when
    set); a route for a role the architecture has no call for is inert (its endpoint is never started)."""
    out = {role: getattr(client, f"route_{role}", None) for role in ROLES.keys() & roles_of(client.architecture,
                                                                                      client.repair)}
    out["overflow"] = client.overflow_to
    return {role: name for role, name in out.items() if name not in (None, "engine")}


def self_hosted(space, client: ClientConfig) -> set[str]:
    """The self-hosted endpoints (`kind: vllm`) the config routes a role to: they must be running."""
    return {name for name in routed_names(client).values() if space.endpoints[name].kind == "vllm"}


def routes_for(space, client: ClientConfig, live: dict[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    """role -> LoadConfig route for every role the config sends away from the engine, and `overflow` (no role:
    where the engine's calls spill while it owes `overflow_at`) when the config sets one. A self-hosted endpoint's
    url and model are its running engine's (`live` handles; without them, its model and no url)."""
    routes = {}
    for role, name in routed_names(client).items():
        ep = space.endpoints[name]
        if ep.kind == "vllm":
            handle = (live or {}).get(name)
            routes[role] = {"name": name, "url": handle.url if handle else "", "api": False,
                            "model": handle.served_model if handle else ep.server.get("model", ""),
                            "key_var": f"AUTOTUNE_KEY_{name.upper()}" if ep.env.get("VLLM_API_KEY") else None}
            continue
        routes[role] = {"name": name, "url": ep.root, "model": ep.model,
                        "key_var": f"AUTOTUNE_KEY_{name.upper()}" if ep.api_key_env else None}
    return routes


def route_keys(space, routes: dict[str, Any]) -> dict[str, str]:
    """The routed endpoints' keys by the variables the load generator reads them from."""
    out = {}
    for route in routes.values():
        r = route if isinstance(route, dict) else route.model_dump()
        ep = space.endpoints[r["name"]]
        key = endpoint_key(ep) if ep.kind == "openai" else expand(ep.env.get("VLLM_API_KEY", ""))
        if r.get("key_var") and key:  # an API's from its variable, a self-hosted engine's VLLM_API_KEY
            out[r["key_var"]] = key
    return out


def start_endpoints(keeper, names: set[str], trial_dir: Path) -> dict[str, Any]:
    """The named self-hosted endpoints' handles, launched the first time (PlanKeeper). One that does not start
    rejects the trial with its reason: the routing's, never remembered against the trial's own server part."""
    live = {}
    for name in sorted(names):
        try:
            live[name] = keeper.endpoint(name, trial_dir / f"endpoint-{name}.log")
        except EngineLaunchError as exc:
            raise TrialRejected(f"endpoint {name!r}: {exc}", exc.reason) from None
    return live


def check_routes(space, routes: dict[str, dict[str, Any]], checked: set[str], trial_dir: Path) -> None:
    """Each routed endpoint answers with its model once per search. One that does not rejects the trial with
    the reason (TrialRejected: the routing's fault, never remembered against the engine's server part)."""
    apis = {r["name"] for r in routes.values() if space.endpoints[r["name"]].kind == "openai"}
    for name in sorted(apis - checked):
        try:
            APIKeeper(space.endpoints[name]).acquire(ServerConfig(), trial_dir / f"endpoint-{name}.log")
        except EngineLaunchError as exc:
            raise TrialRejected(f"endpoint {name!r}: {exc}", exc.reason) from None
        checked.add(name)
