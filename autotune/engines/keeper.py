"""Engine reuse: a running engine serves every following trial whose server part is equal.

Only client-side knobs (architecture, format, repair, cache...) change between such trials, so they skip the
launch entirely. With `engine.park` > 0 an engine whose server part is no longer asked for is frozen (SIGSTOP on
its process group: no CPU, its memory kept) instead of stopped, and a later trial of the same part thaws it in
under a second instead of a launch: reuse across the whole study, whatever order the sampler asks in. Parking is
for hosts where a frozen engine's memory does not stop the next one from starting (CPU: host RAM, checked
before parking); a GPU engine keeps its device memory, so `park` stays 0 there. Engines are stopped when
parking would exceed `park`, when a trial fails in a way that may have broken them, when they stop answering
/health, and when the search ends or is interrupted.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

import httpx
import psutil

from autotune.config import ServerConfig
from autotune.engines.base import Engine, EngineHandle
from autotune.engines.process import group_members, terminate_group


class EngineKeeper:
    hung_grace_s = 2.0  # SIGTERM grace for an engine that failed a trial as `engine_hung` (see close)

    def __init__(self, engine: Engine, park: int = 0):
        self.engine = engine
        self.handle: EngineHandle | None = None
        self.server: ServerConfig | None = None
        self.park = park
        self.parked: list[tuple[ServerConfig, EngineHandle]] = []  # frozen, oldest first
        self.launches = 0
        self.reuses = 0  # thawed engines included
        self.thaws = 0

    def warm(self) -> list[ServerConfig]:
        """Server parts that need no launch, cheapest first: the running one, then the parked, newest first."""
        return ([self.server] if self.server is not None else []) + [s for s, _ in reversed(self.parked)]

    def acquire(self, server: ServerConfig, log_path: Path) -> tuple[EngineHandle, bool]:
        """(handle, reused): the running engine when it matches and is healthy, a thawed parked one, else a
        fresh launch."""
        if self.handle is not None and self.server == server:
            if _healthy(self.handle):
                self.reuses += 1
                return self.handle, True
            self.close()
        match = next((i for i, (s, _) in enumerate(self.parked) if s == server), None)
        wanted = self.parked.pop(match)[1] if match is not None else None  # before parking evicts the oldest
        try:
            self._set_aside()
        except BaseException:  # interrupted: the engine taken off the parked list must not stay frozen
            if wanted is not None:
                self._stop_parked(wanted)
            raise
        if wanted is not None and (handle := self._thaw(wanted)) is not None:
            self.handle, self.server = handle, server
            self.reuses += 1
            self.thaws += 1
            return handle, True
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

    def close_all(self) -> None:
        """The running engine and every parked one: no engine outlives the search."""
        self.close()
        while self.parked:
            self._stop_parked(self.parked.pop(0)[1])

    def _set_aside(self) -> None:
        """Park the running engine (healthy, and the host keeps room for another of its size) or stop it."""
        if self.handle is None:
            return
        if self.park <= 0 or not _healthy(self.handle) or not _room_for_another(self.handle.pgid):
            self.close()
            return
        handle, server, self.handle, self.server = self.handle, self.server, None, None
        try:
            os.killpg(handle.pgid, signal.SIGSTOP)
        except ProcessLookupError:
            self.engine.stop(handle)
            return
        self.parked.append((server, handle))
        while len(self.parked) > self.park:
            self._stop_parked(self.parked.pop(0)[1])

    def _thaw(self, handle: EngineHandle) -> EngineHandle | None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(handle.pgid, signal.SIGCONT)
        deadline = time.monotonic() + 10.0
        while time.monotonic() < deadline:
            if _healthy(handle):
                return handle
            time.sleep(0.2)
        self.engine.stop(handle)  # did not come back: a fresh launch instead
        return None

    def _stop_parked(self, handle: EngineHandle) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(handle.pgid, signal.SIGCONT)  # a frozen process cannot act on SIGTERM: a clean shutdown
        self.engine.stop(handle)


def _room_for_another(pgid: int) -> bool:
    """Parking keeps the engine's memory: park only if the host has twice its resident size free."""
    rss = 0
    for proc in group_members(pgid):
        with contextlib.suppress(psutil.Error):
            rss += proc.memory_info().rss
    return psutil.virtual_memory().available >= 2 * rss


def _healthy(handle: EngineHandle) -> bool:
    try:
        return httpx.get(f"{handle.url}/health", timeout=5.0).status_code == 200
    except httpx.HTTPError:
        return False
