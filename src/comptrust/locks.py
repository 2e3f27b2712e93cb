"""An exclusive inter-process lock on a file that is removed when the holder is done.

`fcntl.flock` locks are released by the kernel when the holder dies (SIGKILL included), so a
killed process never leaves a lock held. The lock file itself is unlinked by the holder before it
unlocks; a waiter that then wakes holding the unlinked inode notices (its fd's inode is no longer
the one at the path) and retries, so removing the file never lets two processes in at once.
Only a SIGKILLed holder leaves the (unlocked, harmless) file behind; the next holder removes it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path
from typing import Iterator


@contextlib.contextmanager
def locked(path: str | Path) -> Iterator[None]:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                same = os.stat(path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
        except BaseException:
            os.close(fd)
            raise
        if same:
            break
        os.close(fd)  # the previous holder removed the file while we waited: lock the new one
    try:
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        os.close(fd)
