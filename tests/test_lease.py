"""`dmlbench.run.lease`: a claim for a shared filesystem, taken over only when its owner is gone."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

from dmlbench.run.lease import describe_owner, is_stale, try_lease


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_held_lease_is_refused_and_names_its_owner(tmp_path):
    path = tmp_path / "row.lease"
    with try_lease(path, ttl=60) as held:
        assert try_lease(path, ttl=60) is None
        owner = json.loads(path.read_text())
        assert owner["pid"] == os.getpid() and owner["host"] == socket.gethostname()
        assert describe_owner(path) == f"pid {os.getpid()} on {socket.gethostname()}"
        assert held.path == path
    assert not path.exists()  # released: the next owner creates it afresh
    assert try_lease(path, ttl=60) is not None


def test_a_dead_owner_on_this_host_is_taken_over_at_once(tmp_path):
    path = tmp_path / "row.lease"
    path.write_text(json.dumps({"host": socket.gethostname(), "pid": dead_pid()}))
    assert is_stale(path, ttl=3600)  # no waiting for the ttl: the process is gone
    taken = try_lease(path, ttl=3600)
    assert taken is not None and json.loads(path.read_text())["pid"] == os.getpid()
    assert [p.name for p in tmp_path.iterdir()] == ["row.lease"]  # the stale one removed
    taken.release()


def test_a_reused_pid_is_not_its_old_owner(tmp_path):
    path = tmp_path / "row.lease"  # this very pid, but started at another time
    path.write_text(json.dumps({"host": socket.gethostname(), "pid": os.getpid(),
                                "started": "1"}))  # fmt: skip
    assert is_stale(path, ttl=3600)


def test_another_hosts_lease_is_stale_only_after_its_ttl(tmp_path):
    path = tmp_path / "row.lease"
    path.write_text(json.dumps({"host": "node-elsewhere", "pid": 1}))
    assert not is_stale(path, ttl=30) and try_lease(path, ttl=30) is None
    os.utime(path, (time.time() - 31, time.time() - 31))  # its owner stopped touching it
    assert is_stale(path, ttl=30)
    assert try_lease(path, ttl=30) is not None


def test_the_owner_keeps_its_lease_alive(tmp_path):
    path = tmp_path / "row.lease"
    with try_lease(path, ttl=0.4):
        os.utime(path, (time.time() - 10, time.time() - 10))
        time.sleep(0.3)  # the heartbeat touches it every ttl / 4
        assert time.time() - path.stat().st_mtime < 0.4


def test_a_release_never_removes_a_lease_it_does_not_own(tmp_path):
    path = tmp_path / "row.lease"
    mine = try_lease(path, ttl=60)
    path.unlink()
    path.write_text(json.dumps({"host": "node-elsewhere", "pid": 7}))  # another's, meanwhile
    mine.release()
    assert json.loads(path.read_text())["pid"] == 7
