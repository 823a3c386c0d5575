"""A non-blocking flock on a lock file that leaves nothing behind: the file is created on
acquire and removed by its last holder on release (with its folder, when that is empty).

Removing a lock file safely: only a holder of the exclusive lock unlinks it, and every
acquirer checks, once it holds the lock, that the path still names the file it locked; if
not (the last holder removed it in between), it starts again on the new file. So two
processes never both believe they hold the same name. This module knows nothing about runs:
core.store.cache decides what is locked and when.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path


class Held(Exception):
    """The lock is held by another process (non-blocking acquire)."""


class FileLock:
    """flock on `path`: exclusive, or shared when `shared` (many shared holders may coexist,
    never with an exclusive one). Raises Held when it cannot be taken now, OSError when the
    file cannot be made (a read-only folder, a folder where the file should be)."""

    def __init__(self, path: str | Path, shared: bool = False):
        self.path = Path(path)
        mode = (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB
        while True:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            try:
                f = open(self.path, "a+")
            except FileNotFoundError:  # the folder was removed by a releasing holder
                continue
            try:
                fcntl.flock(f, mode)
            except BlockingIOError:
                f.close()
                raise Held(str(self.path)) from None
            try:
                same = os.stat(self.path).st_ino == os.fstat(f.fileno()).st_ino
            except FileNotFoundError:
                same = False
            if same:
                self.f = f
                return
            f.close()  # locked a file its last holder has just removed: take the new one

    def release(self) -> None:
        """Unlock; the last holder removes the file and its folder when that is empty."""
        f, self.f = self.f, None
        if f is None:
            return
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)  # only the last holder gets this
            self.path.unlink(missing_ok=True)
            try:
                self.path.parent.rmdir()
            except OSError:
                pass  # not empty (other locks, staging folders): keep it
        except BlockingIOError:
            pass  # other shared holders remain: the file stays theirs
        finally:
            f.close()


def is_held(path: str | Path) -> bool:
    """Whether a live process holds any lock on `path` (never creates the file)."""
    try:
        f = open(path)
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return False
    with f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(f, fcntl.LOCK_UN)
    return False
