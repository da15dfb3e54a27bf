"""One writer per saved session: an advisory lock file beside it, held while a process autosaves there.

An flock dies with its process, so the lock of a crashed or killed process is simply free again (a stale
file is no obstacle); the file holds its owner's pid only for the message. Where there is no fcntl
(Windows) every lock is granted: two processes on one session are then possible, as before.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]


class FileLock:
    """An exclusive, non-blocking lock on `path`, created 0600 and removed on release."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> bool:
        """True when this process now holds the lock (or locking is impossible here); False when another
        live process holds it. OSError when the file cannot be created."""
        if self._fd is not None or fcntl is None:
            return True
        for _ in range(5):
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                return False
            except OSError:  # a file system without locks: no worse than before locking existed
                os.close(fd)
                return True
            # The holder before us may have removed the file between our open and our flock: then we
            # hold a lock on a file no one else will open. Only a lock on the file at `path` counts.
            try:
                current = os.path.samestat(os.fstat(fd), os.stat(self.path))
            except FileNotFoundError:
                current = False
            if current:
                os.ftruncate(fd, 0)
                os.write(fd, f"{os.getpid()}\n".encode())
                self._fd = fd
                return True
            os.close(fd)
        return False

    def release(self) -> None:
        """Remove the file while still holding the lock, then let go (so no one locks a removed file)."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        with contextlib.suppress(OSError):
            os.unlink(self.path)
        os.close(fd)

    def owner(self) -> int | None:
        """The pid written by the process that holds the lock, when it can be read."""
        try:
            text = self.path.read_text(encoding="ascii", errors="replace").strip()
        except OSError:
            return None
        return int(text) if text.isascii() and text.isdigit() and len(text) < 12 else None
