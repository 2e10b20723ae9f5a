"""Load generation: Locust in its own process (it monkey-patches the stdlib; it must not share ours), a typed
LoadConfig in, records out."""

from autotune.loadgen.load_config import LoadConfig
from autotune.loadgen.records import read_jsonl
from autotune.loadgen.runner import LoadResult, app_config, build_load_config, run_load
from autotune.loadgen.standby import StandbyPool

__all__ = [
    "LoadConfig", "LoadResult", "StandbyPool", "app_config", "build_load_config", "read_jsonl", "run_load",
]
