"""Load generators started before their load is known, so a capacity level does not pay for a fresh Locust.

A Locust process spends about a second importing Locust, gevent, the application and the statistics before it
sends a request; a capacity trial starts one per level plus one for the evaluation pass. A standby does that
work while the engine launches (unmeasured time), then blocks on its stdin (no CPU) until `run_load` writes the
path of its load config: the level starts in a tenth of the time. The config also carries the user count, the
run-time backstop and the host, which the locustfile applies on Locust's `init` event, so one kind of standby
fits every load of a trial. Unused standbys are told to exit, then stopped by process group, with their trial.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from pathlib import Path

from autotune.engines import group_alive, start_group, terminate_group
from autotune.loadgen.launch import LOCUSTFILE, clean_env, key_env
from autotune.loadgen.launch import STANDBY_READY as READY


class Standby:
    """One Locust process, imported and waiting for its config's path on stdin."""

    def __init__(self, workdir: Path, api_key: str | dict[str, str] | None) -> None:
        workdir.mkdir(parents=True, exist_ok=True)  # its own empty working directory: no user locust.conf
        self.log_path = workdir / "locust.log"
        env = {**clean_env(), "AUTOTUNE_LOAD_CONFIG": "-"}
        env.update(key_env(api_key))
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

    def release(self) -> None:
        """Close its stdin: an unused standby reads end of file and exits 0 by itself once imported."""
        if not self.used:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()

    def close(self, grace_s: float = 0.0) -> None:
        """Stop it unless a load owns it: up to `grace_s` to exit on its own after `release`, then its group."""
        if self.used:
            return
        self.release()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=grace_s)
        if self.proc.poll() is None or group_alive(self.proc.pid):
            terminate_group(self.proc.pid, 2.0)


class StandbyPool:
    """The standbys of one trial: `take` hands out one that is alive, `top_up` starts more between levels (at
    most `ahead` import at once: a 50-level search must not start 51 interpreters), `close` stops the unused."""

    def __init__(self, root: Path, api_key: str | dict[str, str] | None, size: int, ahead: int = 8) -> None:
        self.api_key = api_key  # run_load takes a standby only for a load with the same key
        self.root, self.ahead = root, ahead
        self.left = size  # standbys the trial may still need (levels and the evaluation pass)
        self.free: list[Standby] = []
        self.started: list[Standby] = []  # every one, so `close` reaches one taken but not yet handed its load
        self.dropped = 0  # not imported within wait_ready's timeout: stopped, their loads start fresh processes
        try:
            self.top_up()
        except BaseException:
            self.close()
            raise

    def top_up(self) -> None:
        """Start standbys until `ahead` are free or the trial can need no more; call it outside measurement."""
        while len(self.free) < min(self.ahead, self.left):
            sb = Standby(self.root / f"standby-{len(self.started):02d}", self.api_key)
            self.started.append(sb)
            self.free.append(sb)

    def wait_ready(self, timeout_s: float = 30.0) -> float:
        """Seconds spent until every live standby has imported: levels must not share the CPU with imports. Those
        still importing at the timeout are stopped and counted in `dropped`."""
        started = time.monotonic()
        while time.monotonic() - started < timeout_s:
            if all(sb.ready() or sb.proc.poll() is not None for sb in self.free):
                break
            time.sleep(0.05)
        late = [sb for sb in self.free if not sb.ready() and sb.proc.poll() is None]
        for sb in late:
            self.free.remove(sb)
            sb.close()
        self.dropped += len(late)
        return time.monotonic() - started

    def take(self) -> Standby | None:
        while self.free:
            sb = self.free.pop(0)
            self.left -= 1
            if sb.proc.poll() is None:
                return sb
            sb.close()
        return None

    def close(self) -> None:
        """Every standby not handed a load: all told to exit first, then each waited for (1 s in all), then its
        group stopped. A standby that exits by itself is never signalled."""
        unused = [sb for sb in self.started if not sb.used]
        for sb in unused:
            sb.release()
        deadline = time.monotonic() + 1.0
        for sb in unused:
            try:
                sb.close(grace_s=max(0.0, deadline - time.monotonic()))
            except Exception:  # one that cannot be stopped must not leave the others running
                continue
        self.free = []
