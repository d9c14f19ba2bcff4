"""A claim that holds on a shared (network) filesystem: a lease file, kept alive by its owner.

``fcntl`` locks (``dmlbench.run.lock``) are exact on one machine but are what
breaks on many NFS set-ups, the very reason Optuna's journal storage exists
(its ``JournalFileOpenLock`` relies on ``O_CREAT | O_EXCL``, which NFSv3+
makes atomic). A lease uses the same primitive: the file is created
exclusively, names its owner (host, pid, the pid's start time), and the owner
touches it every ``ttl / 4`` seconds from a daemon thread. Another process
takes over a lease only when its owner is gone: on the same host when that
process no longer exists (at once, so a killed tune restarted on the spot
continues), elsewhere when the file has not been touched for ``ttl`` seconds
(hosts' clocks must agree to well within ``ttl``).

A stale lease is broken by renaming it to a name of the breaker's own
(atomic: of two breakers one wins) and checking the moved file is the stale
one that was judged; only then is it removed. Every lease file is written by
dmlbench itself, so removing one deletes nothing a user made.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
import uuid
from pathlib import Path


def _start_time(pid: int) -> str | None:
    """The kernel's start time of ``pid`` (Linux), which tells a reused pid apart."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _alive(pid: int, started: str | None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process, alive
    return started is None or _start_time(pid) in (None, started)


class Lease:
    """A held lease; ``release()`` gives it up (and stops its heartbeat)."""

    def __init__(self, path: Path, ttl: float):
        self.path, self.ttl = path, ttl
        self._token = read_owner(path)["token"]
        self._stop = threading.Event()
        self._beat = threading.Thread(target=self._keep_alive, daemon=True)
        self._beat.start()

    def _keep_alive(self) -> None:
        while not self._stop.wait(self.ttl / 4):
            with contextlib.suppress(OSError):  # a vanished lease: the next owner finds out
                os.utime(self.path)

    def release(self) -> None:
        if self._stop.is_set():
            return
        self._stop.set()
        if read_owner(self.path).get("token") == self._token:  # never remove another's
            with contextlib.suppress(OSError):
                self.path.unlink()

    def __enter__(self) -> Lease:
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def read_owner(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def describe_owner(path: Path) -> str:
    owner = read_owner(path)
    if not owner:
        return "another process"
    return f"pid {owner.get('pid', '?')} on {owner.get('host', '?')}"


def is_stale(path: Path, ttl: float) -> bool:
    """Whether the lease at ``path`` has lost its owner."""
    return _stale_identity(path, ttl) is not None


def _stale_identity(path: Path, ttl: float) -> tuple | None:
    """What identifies the lease at ``path`` (inode and token) if its owner is gone, so
    a break moves that file and no newer one; else None."""
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None  # released meanwhile: nothing to break, the next try creates it
    owner = read_owner(path)
    identity = (stat.st_ino, owner.get("token"))
    if owner.get("host") == socket.gethostname() and isinstance(owner.get("pid"), int):
        return None if _alive(owner["pid"], owner.get("started")) else identity
    return identity if time.time() - stat.st_mtime > ttl else None  # unread: being written


def try_lease(path: Path, ttl: float = 120.0) -> Lease | None:
    """The lease on ``path``, or None while a live owner holds it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(3):  # a break can race another breaker: try again, a few times at most
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            judged = _stale_identity(path, ttl)
            if judged is None:
                return None
            _break(path, judged)
            continue
        owner = {"host": socket.gethostname(), "pid": os.getpid(), "token": uuid.uuid4().hex,
                 "started": _start_time(os.getpid()), "since": time.time()}  # fmt: skip
        with os.fdopen(fd, "w") as file:
            json.dump(owner, file)
        return Lease(path, ttl)
    return None


def _break(path: Path, judged: tuple) -> None:
    """Move the stale lease (``judged``: its inode and token) aside and remove it; a
    newer lease moved by a race is put back."""
    moved = path.with_name(f"{path.name}.broken-{uuid.uuid4().hex}")
    try:
        os.rename(path, moved)
    except OSError:
        return  # another breaker moved it first
    if (moved.stat().st_ino, read_owner(moved).get("token")) != judged:  # a fresh one, raced
        with contextlib.suppress(OSError):  # yet another one exists: that one stands
            os.link(moved, path)
    moved.unlink()
