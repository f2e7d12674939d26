"""An exclusive lock beside a database file, for work that must not run in two processes
at once (provisioning: creating, upgrading or recreating a store).

SQLite serialises writes, but not "look at the schema, then create it": two processes
starting on a fresh file both see no tables. A `flock` on a sidecar `<file>.lock` makes the
second one wait until the first is done; it then finds the schema in place. The lock file
is left behind on purpose: removing it would let a third process lock a different inode.
`flock` is per host, like SQLite itself (which is not safe on network file systems).
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from types import TracebackType

LOCK_SUFFIX = ".lock"
OWNER_ONLY = 0o600


class FileLock:
    """`with FileLock(db_path):` holds an exclusive flock on `<db_path>.lock`; blocks
    until any other holder (thread or process) releases it. Raises OSError when the lock
    file cannot be created (missing directory, read-only disk)."""

    def __init__(self, target: Path) -> None:
        self.path = target.with_name(target.name + LOCK_SUFFIX)
        self._fd: int | None = None

    def acquire(self) -> FileLock:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, OWNER_ONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        return self

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)  # closing the descriptor drops its flock

    def __enter__(self) -> FileLock:
        return self.acquire()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()
