"""Load generators started before their load is known, so a capacity level does not pay for a fresh Locust.

A Locust process spends about a second importing Locust, gevent, the application and the statistics before it
sends a request; a capacity trial starts one per level plus one for the evaluation pass. A standby does that
work while the engine launches (unmeasured time), then blocks on its stdin (no CPU) until `run_load` writes the
path of its load config: the level starts in a tenth of the time. The config also carries the user count, the
run-time backstop and the host, which the locustfile applies on Locust's `init` event, so one kind of standby
fits every load of a trial. Unused standbys are stopped by process group with their trial.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from autotune.engines.process import start_group, terminate_group
from autotune.loadgen import STANDBY_READY as READY
from autotune.loadgen.runner import LOCUSTFILE, clean_env


class Standby:
    """One Locust process, imported and waiting for its config's path on stdin."""

    def __init__(self, workdir: Path, api_key: str | None) -> None:
        workdir.mkdir(parents=True, exist_ok=True)  # its own empty working directory: no user locust.conf
        self.log_path = workdir / "locust.log"
        env = {**clean_env(), "AUTOTUNE_LOAD_CONFIG": "-"}
        if api_key:
            env["AUTOTUNE_API_KEY"] = api_key
        argv = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "-u", "1", "-r", "1",
                "--stop-timeout", "5", "--only-summary", "--exit-code-on-error", "0", "--loglevel", "WARNING"]
        self.proc = start_group(argv, env, self.log_path, cwd=workdir.resolve(), stdin=subprocess.PIPE)
        self.used = False

    def ready(self) -> bool:
        return self.log_path.is_file() and READY in self.log_path.read_text(errors="replace")

    def go(self, cfg_path: Path) -> subprocess.Popen | None:
        """Hand it its load; None when it has died meanwhile (the caller starts a fresh process)."""
        if self.proc.poll() is not None:
            return None
        try:
            self.proc.stdin.write(f"{cfg_path.resolve()}\n".encode())
            self.proc.stdin.close()
        except OSError:
            return None
        self.used = True
        return self.proc

    def close(self) -> None:
        if not self.used:
            terminate_group(self.proc.pid, 2.0)


class StandbyPool:
    """The standbys of one trial: `take` hands out one that is alive, `close` stops the unused ones."""

    def __init__(self, root: Path, api_key: str | None, size: int) -> None:
        self.api_key = api_key  # run_load takes a standby only for a load with the same key
        self.free: list[Standby] = []
        try:
            for i in range(size):
                self.free.append(Standby(root / f"standby-{i:02d}", api_key))
        except BaseException:
            self.close()
            raise

    def wait_ready(self, timeout_s: float = 30.0) -> float:
        """Seconds spent until every live standby has imported: levels must not share the CPU with imports."""
        started = time.monotonic()
        while time.monotonic() - started < timeout_s:
            if all(sb.ready() or sb.proc.poll() is not None for sb in self.free):
                break
            time.sleep(0.05)
        return time.monotonic() - started

    def take(self) -> Standby | None:
        while self.free:
            sb = self.free.pop(0)
            if sb.proc.poll() is None:
                return sb
            sb.close()
        return None

    def close(self) -> None:
        for sb in self.free:
            sb.close()
        self.free = []
