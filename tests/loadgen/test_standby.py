"""Standby load generators (autotune.loadgen.standby): real Locust processes that import, then wait for a load."""

from __future__ import annotations

import subprocess
import sys
import time

import psutil

from autotune.loadgen.launch import clean_env
from autotune.loadgen.load_config import BUILT_IN
from autotune.loadgen.standby import StandbyPool

CLOCK_PROBE = """
import time, gevent
from autotune.loadgen import locustfile  # noqa: F401 (a standby: blocks on stdin for its config's path)
t = time.monotonic()
gevent.spawn_later(1.0, lambda: None).join()
print("ELAPSED", time.monotonic() - t)
"""


def test_a_standby_that_waited_keeps_its_timers(tmp_path):
    """A standby blocks on stdin with gevent's loop clock standing still; a timer armed after it is told its load
    must still run its full length (a stale clock fired Locust's run-time timer early and cut levels short)."""
    cfg = tmp_path / "load-config.json"
    cfg.write_text(BUILT_IN.model_dump_json())  # a valid config: an invalid one is refused on read
    proc = subprocess.Popen([sys.executable, "-c", CLOCK_PROBE], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, env={**clean_env(), "AUTOTUNE_LOAD_CONFIG": "-"}, text=True)
    assert "standing by" in proc.stdout.readline()
    time.sleep(2.5)  # longer than the timer: a stale clock makes it fire at once
    out, _ = proc.communicate(f"{cfg}\n", timeout=60)
    elapsed = float(out.split("ELAPSED")[1])
    assert 0.95 <= elapsed < 2.0, out


def test_the_pool_imports_a_bounded_number_and_stops_the_unused_without_signals(tmp_path):
    pool = StandbyPool(tmp_path, None, size=5, ahead=2)
    assert len(pool.started) == 2  # a long search does not start one interpreter per possible level at once
    assert pool.wait_ready() < 30 and pool.dropped == 0
    taken = pool.take()  # taken but never handed a load (an interrupt between take and go): close must reach it
    assert taken is not None and pool.left == 4
    pool.top_up()
    assert len(pool.started) == 3 and len(pool.free) == 2
    pool.wait_ready()
    pool.close()
    for sb in pool.started:  # told to exit (end of stdin), they exit 0 by themselves: no signal
        assert sb.proc.returncode == 0, (sb.proc.returncode, sb.log_path.read_text())
    assert not psutil.Process().children(recursive=True)


def test_a_standby_not_imported_in_time_is_stopped_and_counted(tmp_path):
    pool = StandbyPool(tmp_path, None, size=2)
    pool.wait_ready(timeout_s=0.0)  # still importing: stopped, and its load will start a fresh process
    assert pool.dropped == 2 and pool.take() is None
    assert all(sb.proc.poll() is not None for sb in pool.started)
    pool.close()
    assert not psutil.Process().children(recursive=True)
