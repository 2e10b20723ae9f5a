"""Engine processes: own process group, teardown by group id, and a registry to reap orphans.

Never kill by name: every engine we start is recorded (pid, pgid, create time, owner pid) under the run
directory, so a later run can reap exactly the groups whose owning tuner died (e.g. `kill -9`).
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import psutil

from autotune.secrets import scrub_bytes

PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # runs in the child before exec
    with contextlib.suppress(Exception):  # Linux only; best effort, the registry is the guarantee
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def start_group(argv: list[str], env: dict[str, str], log_path: Path, cwd: Path | None = None,
                stdin: int = subprocess.DEVNULL) -> subprocess.Popen:
    """Start argv (a list, never a shell string) as the leader of a new process group. Its output reaches
    log_path through a pump that applies the redaction policy: an engine (or a wrapper script) that prints a
    token from its environment never writes it to disk."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log = log_path.open("ab")
    try:
        proc = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=stdin, env=env,
            start_new_session=True, preexec_fn=_die_with_parent, close_fds=True, cwd=cwd,
        )
    except BaseException:
        log.close()
        raise
    pump = threading.Thread(target=_pump, args=(proc.stdout, log), daemon=True, name=f"log-{proc.pid}")
    pump.start()
    proc.log_pump = pump  # type: ignore[attr-defined]
    return proc


def flush_log(proc: subprocess.Popen, timeout_s: float = 2.0) -> None:
    """After the process exited: wait (bounded) until its last lines are in the log, to read its error."""
    pump = getattr(proc, "log_pump", None)
    if pump is not None:
        pump.join(timeout_s)


def _pump(src, dst) -> None:
    """Copy lines until every process holding the pipe has exited (EOF), scrubbed, flushed line by line."""
    with src, dst:
        for line in iter(src.readline, b""):
            dst.write(scrub_bytes(line))
            dst.flush()


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


STOPPED_GRACE_S = 1.0  # a stopped (SIGSTOP / traced) process cannot act on SIGTERM: do not wait for it


def group_members(pgid: int) -> list[psutil.Process]:
    """The live processes of a process group (psutil has no group query: scan, tolerating exits mid-scan)."""
    members = []
    for proc in psutil.process_iter():
        with contextlib.suppress(psutil.Error, OSError):
            if os.getpgid(proc.pid) == pgid:
                members.append(proc)
    return members


def group_stopped(pgid: int) -> bool:
    """True if any member of the group is stopped (job control or ptrace): it will not handle SIGTERM."""
    for proc in group_members(pgid):
        with contextlib.suppress(psutil.Error):
            if proc.status() in (psutil.STATUS_STOPPED, psutil.STATUS_TRACING_STOP):
                return True
    return False


def terminate_group(pgid: int, timeout_s: float = 20.0) -> bool:
    """SIGTERM the group, wait up to timeout_s (STOPPED_GRACE_S if a member is stopped), then SIGKILL. Returns
    True if SIGKILL was needed."""
    stopped = group_stopped(pgid)
    try:
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + (min(timeout_s, STOPPED_GRACE_S) if stopped else timeout_s)
    while time.monotonic() < deadline:
        if not group_alive(pgid):
            return False
        _reap_children()
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)
    for _ in range(50):
        _reap_children()
        if not group_alive(pgid):
            break
        time.sleep(0.1)
    return True


def _reap_children() -> None:
    """Collect exited children so a dead group leader does not linger as a zombie in our own group check."""
    with contextlib.suppress(ChildProcessError):
        while os.waitpid(-1, os.WNOHANG)[0] != 0:
            pass


class EngineRegistry:
    """Files `<dir>/<pgid>.json` recording the engines this tool started and who owns them."""

    def __init__(self, directory: Path):
        self.dir = directory

    def record(self, proc: subprocess.Popen, argv: list[str]) -> Path:
        self.dir.mkdir(parents=True, exist_ok=True)
        entry = {
            "pid": proc.pid,
            "pgid": os.getpgid(proc.pid),
            "create_time": psutil.Process(proc.pid).create_time(),
            "owner_pid": os.getpid(),
            "owner_create_time": psutil.Process().create_time(),
            "argv0": argv[:3],
        }
        path = self.dir / f"{entry['pgid']}.json"
        path.write_text(json.dumps(entry))
        return path

    def forget(self, pgid: int) -> None:
        (self.dir / f"{pgid}.json").unlink(missing_ok=True)

    def reap_orphans(self, timeout_s: float = 10.0) -> list[int]:
        """Terminate recorded engine groups whose owner is gone; returns the reaped pgids."""
        reaped: list[int] = []
        if not self.dir.is_dir():
            return reaped
        for path in sorted(self.dir.glob("*.json")):
            try:
                entry = json.loads(path.read_text())
            except (OSError, ValueError):
                path.unlink(missing_ok=True)
                continue
            if _alive(entry["owner_pid"], entry["owner_create_time"]):
                continue  # another live tuner owns it
            leader_is_ours = _alive(entry["pid"], entry["create_time"])
            # the pgid is still ours if its leader is the process we started (same create time), or if the
            # leader is gone but members of the group live on (a pgid is not reused while the group exists)
            if leader_is_ours or (group_alive(entry["pgid"]) and not psutil.pid_exists(entry["pgid"])):
                terminate_group(entry["pgid"], timeout_s)
                reaped.append(entry["pgid"])
            path.unlink(missing_ok=True)
        return reaped


def _alive(pid: int, create_time: float) -> bool:
    try:
        return abs(psutil.Process(pid).create_time() - create_time) < 0.01
    except psutil.Error:
        return False
