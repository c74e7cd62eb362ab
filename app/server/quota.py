"""The workspace quota: how many bytes the server's workspace holds, against the limit of ``--max-workspace-gb``.

The size is measured by one walk of the workspace (``os.scandir``, links not followed), done off the
event loop and kept for ``TTL_S`` seconds; what the server itself writes in the meantime (an upload,
its extraction) is added to the kept figure at once, so two uploads in a row cannot both pass on a
stale measure. Jobs' outputs written since the last walk are counted at the next one.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

TTL_S = 30.0


def folder_bytes(root: Path) -> int:
    """Bytes of the regular files under ``root`` (iterative; links are not followed)."""
    total, stack = 0, [str(root)]
    while stack:
        try:
            with os.scandir(stack.pop()) as it:
                for e in it:
                    try:
                        if e.is_dir(follow_symlinks=False):
                            stack.append(e.path)
                        elif e.is_file(follow_symlinks=False):
                            total += e.stat(follow_symlinks=False).st_size
                    except OSError:
                        continue
        except OSError:
            continue
    return total


class WorkspaceQuota:
    def __init__(self, root: Path, limit_bytes: int):
        self.root, self.limit = Path(root), int(limit_bytes)
        self._used: int | None = None
        self._at = 0.0
        self._lock = threading.Lock()

    def used(self) -> int:
        """The workspace's bytes (a walk at most every TTL_S seconds). Blocking: call it off the event loop."""
        with self._lock:
            if self._used is not None and time.monotonic() - self._at < TTL_S:
                return self._used
        measured = folder_bytes(self.root)
        with self._lock:
            self._used, self._at = measured, time.monotonic()
            return measured

    def left(self) -> int:
        return max(0, self.limit - self.used())

    def add(self, n: int) -> None:
        """Count ``n`` bytes the server just wrote (negative: freed)."""
        with self._lock:
            if self._used is not None:
                self._used = max(0, self._used + int(n))

    def full_message(self) -> str:
        return (f"the server's workspace holds {self.used() / 2**30:.2f} GiB, its quota is {self.limit / 2**30:.2f} GiB "
                "(--max-workspace-gb): delete uploads, datasets or finished jobs first")
