"""One owner at a time: an OS-level lock on a file, released when its process dies.

``fcntl.flock`` locks belong to the open file: the kernel drops them when the
process exits for any reason, SIGKILL included, so a lock can never be left
behind by a dead process (a lock *file* left behind means nothing). The file
holds the owner's pid, for the message another process shows.

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
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return Lock(path, fd)


def holder(path: Path) -> str:
    """Who holds the lock on ``path``, for a message ("pid 123"), as the file says."""
    try:
        pid = Path(path).read_text().strip()
    except OSError:
        return "another process"
    return f"pid {pid}" if pid.isdigit() else "another process"


def is_held(path: Path) -> bool:
    """Whether a live process holds the lock on ``path`` now (a missing file: no)."""
    if not Path(path).exists():
        return False
    lock = try_lock(path)
    if lock is None:
        return True
    lock.release()
    return False
