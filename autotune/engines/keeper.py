"""Engine reuse: a running engine serves every following trial whose server part is equal.

Only client-side knobs (architecture, format, repair, cache...) change between such trials, so they skip the
launch entirely. The engine is stopped when the server part changes, when a trial fails in a way that may
have broken it, when it stops answering /health, and when the search ends or is interrupted.
"""

from __future__ import annotations

from pathlib import Path

import httpx

from autotune.engines.base import Engine, EngineHandle
from autotune.engines.process import terminate_group
from autotune.knobs import ServerConfig


class EngineKeeper:
    hung_grace_s = 2.0  # SIGTERM grace for an engine that failed a trial as `engine_hung` (see close)

    def __init__(self, engine: Engine):
        self.engine = engine
        self.handle: EngineHandle | None = None
        self.server: ServerConfig | None = None
        self.launches = 0
        self.reuses = 0

    def acquire(self, server: ServerConfig, log_path: Path) -> tuple[EngineHandle, bool]:
        """(handle, reused): the running engine when it matches and is healthy, else a fresh launch."""
        if self.handle is not None and self.server == server and _healthy(self.handle):
            self.reuses += 1
            return self.handle, True
        self.close()
        self.handle = self.engine.launch(server, log_path)
        self.server = server
        self.launches += 1
        return self.handle, False

    def close(self, grace_s: float | None = None) -> None:
        """Stop the kept engine. grace_s: a shorter SIGTERM grace than the engine's shutdown timeout, for an engine
        known to be hung (it will not shut down cleanly; waiting only delays the next trial)."""
        if self.handle is not None:
            handle, self.handle, self.server = self.handle, None, None
            if grace_s is not None:
                terminate_group(handle.pgid, grace_s)
            self.engine.stop(handle)  # a no-op kill when the group is gone; forgets the registry entry


def _healthy(handle: EngineHandle) -> bool:
    try:
        return httpx.get(f"{handle.url}/health", timeout=5.0).status_code == 200
    except httpx.HTTPError:
        return False
