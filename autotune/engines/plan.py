"""A plan's engines: the trial's own (its keeper: reuse, parking) and the self-hosted endpoints routes send roles
to (`endpoints.NAME` with `kind: vllm`), each launched once on its fixed server part and kept for the search."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from autotune.config import ServerConfig
from autotune.engines.base import EngineHandle
from autotune.engines.keeper import EngineKeeper


class PlanKeeper:
    """The main keeper's interface (acquire, close, warm, counters: delegated), plus `endpoint(name)`."""

    def __init__(self, main, extras: dict[str, tuple[EngineKeeper, ServerConfig]]):
        self.main = main
        self.extras = extras

    def __getattr__(self, name: str) -> Any:  # acquire, close, warm, handle, park, parked, hung_grace_s ...
        return getattr(self.main, name)

    @property
    def launches(self) -> int:
        return self.main.launches + sum(k.launches for k, _ in self.extras.values())

    def endpoint(self, name: str, log_path: Path) -> EngineHandle:
        """The named self-hosted endpoint, launched the first time a trial routes to it, reused after."""
        keeper, server = self.extras[name]
        return keeper.acquire(server, log_path)[0]

    def close_all(self) -> None:
        """No engine outlives the search: the main one (and its parked ones) and every endpoint's."""
        try:
            self.main.close_all()
        finally:
            for keeper, _ in self.extras.values():
                keeper.close_all()
