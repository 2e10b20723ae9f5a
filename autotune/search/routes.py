"""A model per node: each FM role's calls go where its `route_<role>` knob says, the space's `engine` or one of its
named `endpoints` (APIs). The load generator gets each route (url, model, the variable its key is in) and the
keys through its environment; an endpoint is checked (it lists the model) the first time a trial routes to it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from autotune.config import ClientConfig, ServerConfig
from autotune.engines import APIKeeper, endpoint_key
from autotune.errors import EngineLaunchError, TrialRejected
from autotune.fmware import ROLES


def routes_for(space, client: ClientConfig) -> dict[str, dict[str, Any]]:
    """role -> LoadConfig route for every role the config sends away from the engine, and `overflow` (no role:
    where the engine's calls spill while it owes `overflow_at`) when the config sets one."""
    routes = {}
    for role in [*ROLES, "overflow"]:
        name = client.overflow_to if role == "overflow" else getattr(client, f"route_{role}", None)
        if name in (None, "engine"):
            continue
        api = space.endpoints[name]
        routes[role] = {"name": name, "url": api.root, "model": api.model,
                        "key_var": f"AUTOTUNE_KEY_{name.upper()}" if api.api_key_env else None}
    return routes


def route_keys(space, routes: dict[str, Any]) -> dict[str, str]:
    """The routed endpoints' keys by the variables the load generator reads them from."""
    out = {}
    for route in routes.values():
        r = route if isinstance(route, dict) else route.model_dump()
        if r.get("key_var") and (key := endpoint_key(space.endpoints[r["name"]])):
            out[r["key_var"]] = key
    return out


def check_routes(space, routes: dict[str, dict[str, Any]], checked: set[str], trial_dir: Path) -> None:
    """Each routed endpoint answers with its model once per search. One that does not rejects the trial with
    the reason (TrialRejected: the routing's fault, never remembered against the engine's server part)."""
    for name in sorted({r["name"] for r in routes.values()} - checked):
        try:
            APIKeeper(space.endpoints[name]).acquire(ServerConfig(), trial_dir / f"endpoint-{name}.log")
        except EngineLaunchError as exc:
            raise TrialRejected(f"endpoint {name!r}: {exc}", exc.reason) from None
        checked.add(name)
