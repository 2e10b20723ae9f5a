"""Engine teardown with dummy process groups, and the orphan registry."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import psutil

from autotune.engines.process import EngineRegistry, group_alive, start_group, terminate_group


def _wait_for(cond, timeout=5.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.05)
    return cond()


def test_terminate_group_kills_children_too(tmp_path):
    proc = start_group(["sh", "-c", "sleep 60 & sleep 60 & wait"], dict(os.environ), tmp_path / "log")
    assert _wait_for(lambda: len(psutil.Process(proc.pid).children()) == 2)
    kids = [c.pid for c in psutil.Process(proc.pid).children()]
    assert os.getpgid(proc.pid) == proc.pid != os.getpgid(0)  # its own group, not ours
    assert terminate_group(proc.pid, timeout_s=5) is False  # SIGTERM was enough
    assert not group_alive(proc.pid)
    assert not any(psutil.pid_exists(k) and psutil.Process(k).status() != psutil.STATUS_ZOMBIE for k in kids)


def test_terminate_group_escalates_to_sigkill(tmp_path):
    proc = start_group(["sh", "-c", "trap '' TERM; sleep 60 & wait; sleep 60"], dict(os.environ), tmp_path / "log")
    time.sleep(0.3)
    t0 = time.monotonic()
    assert terminate_group(proc.pid, timeout_s=1.0) is True
    assert time.monotonic() - t0 < 8
    assert not group_alive(proc.pid)


def test_registry_reaps_groups_whose_owner_died(tmp_path):
    reg = EngineRegistry(tmp_path / "engines")
    proc = start_group(["sleep", "60"], dict(os.environ), tmp_path / "log")
    path = reg.record(proc, ["sleep", "60"])
    assert reg.reap_orphans() == []  # we (the owner) are alive: not an orphan
    # pretend the owner was a tuner that got kill -9'ed
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    entry = json.loads(path.read_text())
    entry["owner_pid"] = dead.pid
    path.write_text(json.dumps(entry))
    assert reg.reap_orphans(timeout_s=5) == [proc.pid]
    proc.wait(timeout=5)
    assert not group_alive(proc.pid)
    assert not list((tmp_path / "engines").glob("*.json"))


def test_registry_ignores_recycled_pid(tmp_path):
    reg = EngineRegistry(tmp_path / "engines")
    other = start_group(["sleep", "60"], dict(os.environ), tmp_path / "log")
    path = reg.record(other, ["sleep"])
    # the pid now belongs to an unrelated process (create time differs) and the owner is dead: keep it
    entry = json.loads(path.read_text())
    entry.update(create_time=1.0, owner_pid=999999, owner_create_time=1.0)
    path.write_text(json.dumps(entry))
    try:
        assert reg.reap_orphans() == []
        assert other.poll() is None
    finally:
        terminate_group(other.pid, 5)
