"""One owner at a time: an OS-level lock on a file, released when its process dies.

``fcntl.flock`` locks belong to the open file: the kernel drops them when the
process exits for any reason, SIGKILL included, so a lock can never be left
behind by a dead process (a lock *file* left behind means nothing, and is
never written: taking a lock changes no byte in a run directory). Who holds a
lock is read from the kernel's table (``/proc/locks``) for the message another
process shows.

Used for a run directory (whoever trains it), a run of a sweep grid (whichever
sweep claimed it) and a tuning study (whichever process tunes that row).
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

RUN_LOCK = ".owner.lock"  # in a run directory: held by the process that trains it


class Lock:
    """A held lock; ``release()`` (or process death) frees it."""

    def __init__(self, path: Path, fd: int):
        self.path, self._fd = path, fd

    def release(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)  # closing the file drops its flock
            self._fd = -1

    def __enter__(self) -> Lock:
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def try_lock(path: Path) -> Lock | None:
    """The lock on ``path`` (created if missing), or None while a live process holds it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return Lock(path, fd)


def holder(path: Path) -> str:
    """Who holds the lock on ``path``, for a message ("pid 123"): the kernel's lock
    table names the process (Linux); elsewhere, "another process"."""
    try:
        inode = os.stat(path).st_ino
        table = Path("/proc/locks").read_text()
    except OSError:
        return "another process"
    for line in table.splitlines():
        fields = line.split()  # id: FLOCK ADVISORY WRITE pid major:minor:inode start end
        if len(fields) >= 6 and fields[1] == "FLOCK" and fields[5].endswith(f":{inode}"):
            return f"pid {fields[4]}"
    return "another process"


def is_held(path: Path) -> bool:
    """Whether a live process holds the lock on ``path`` now (a missing file: no)."""
    if not Path(path).exists():
        return False
    lock = try_lock(path)
    if lock is None:
        return True
    lock.release()
    return False
