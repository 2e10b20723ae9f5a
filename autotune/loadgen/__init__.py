"""Load generation: Locust in its own process (it monkey-patches the stdlib; it must not share ours), a typed
LoadConfig in, records out.

The surface is resolved lazily (PEP 562): the locustfile imports modules of this package, and must not pull the
runner's imports (httpx, hence ssl) in before Locust has monkey-patched the stdlib."""

from importlib import import_module

_SURFACE = {
    "LoadConfig": "load_config", "read_jsonl": "records", "LoadResult": "runner", "app_config": "runner",
    "build_load_config": "runner", "run_load": "runner", "StandbyPool": "standby",
}
__all__ = sorted(_SURFACE)


def __getattr__(name: str):
    if name in _SURFACE:
        return getattr(import_module(f"autotune.loadgen.{_SURFACE[name]}"), name)
    raise AttributeError(f"module 'autotune.loadgen' has no attribute {name!r}")
