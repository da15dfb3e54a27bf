"""Saved sessions on disk: one JSON file each (format: file.py), written atomically and privately;
autosave, listing, resolving `last`/N/id, and one writer per session (a lock)."""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import tempfile
import time
import weakref
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from qwenchat.conversation.file import (
    MAX_FILE_BYTES,
    SessionFile,
    StoreError,
    check_id,
    dump_session,
    now_stamp,
    parse_session,
)
from qwenchat.conversation.lock import FileLock
from qwenchat.conversation.model import Conversation
from qwenchat.paths import data_dir, private_dir
from qwenchat.text.numbers import plain_int

# What atomic_write_text leaves behind when it is killed between writing and renaming.
_TEMP = re.compile(r"\.(?P<id>.+)\.json\.[A-Za-z0-9_]+\.tmp")
_TEMP_AGE_WITHOUT_LOCKS = 600.0  # seconds; only where locks do not exist (no fcntl)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write `text` so that a crash or kill -9 leaves either the old file or the new one, never half of one.

    Raises OSError. The file is private (0600): conversations may be personal.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())  # the data is on disk before the rename makes it visible
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    # The rename itself survives a power cut only once the directory is synced (not possible on Windows).
    with contextlib.suppress(OSError, AttributeError):
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def _os_reason(exc: OSError) -> str:
    return (exc.strerror or str(exc)).lower()


class TargetExists(StoreError):
    """The file to write exists and overwriting was not asked for."""


def check_target(path: Path, *, overwrite: bool) -> None:
    """A file the user named to write: its directory must exist (never created behind their back), and an
    existing file is replaced only when `overwrite` (TargetExists otherwise)."""
    try:
        if path.is_dir():
            raise StoreError(f"{path} is a directory; give a file name")
        if not path.parent.is_dir():
            raise StoreError(f"cannot write {path}: there is no directory {path.parent}")
        if path.exists() and not overwrite:
            raise TargetExists(f"{path} exists")
    except OSError as exc:
        raise StoreError(f"cannot write {path}: {_os_reason(exc)}") from None


def save_file(
    path: str | os.PathLike[str],
    conversation: Conversation,
    *,
    model: str,
    settings_overrides: Mapping[str, Any],
    seed: int,
    session_id: str | None = None,
    created: str | None = None,
    piped: bool = False,
    overwrite: bool = True,
    fingerprint: Mapping[str, Any] | None = None,
) -> SessionFile:
    """Save to `path` (atomically); a new id when none is given. Returns what was saved. The directory
    must exist; an existing file is replaced only with `overwrite` (TargetExists otherwise)."""
    path = Path(path)
    check_target(path, overwrite=overwrite)
    session_id = session_id or SessionStore.new_id()
    updated = now_stamp()
    created = created or updated
    text = dump_session(
        conversation,
        model=model,
        settings_overrides=settings_overrides,
        seed=seed,
        session_id=session_id,
        created=created,
        updated=updated,
        piped=piped,
        fingerprint=fingerprint,
    )
    try:
        atomic_write_text(path, text)
    except OSError as exc:
        raise StoreError(f"cannot write {path}: {_os_reason(exc)}") from None
    return SessionFile(
        session_id,
        created,
        updated,
        model,
        dict(settings_overrides),
        seed,
        conversation,
        path,
        piped,
        fingerprint=dict(fingerprint) if fingerprint else None,
    )


def load_file(path: str | os.PathLike[str]) -> SessionFile:
    """Read and check one session file; StoreError with one line on anything wrong."""
    path = Path(path)
    try:
        st = path.stat()
    except (FileNotFoundError, NotADirectoryError):
        raise StoreError(f"no such file: {path}") from None
    except OSError as exc:
        raise StoreError(f"cannot read {path}: {_os_reason(exc)}") from None
    except ValueError:  # a NUL byte in the name
        raise StoreError(f"not a valid file name: {str(path)!r}") from None
    if path.is_dir():
        raise StoreError(f"{path} is a directory, not a session file")
    if not path.is_file():
        raise StoreError(f"{path} is not a regular file")  # a FIFO or device would block or never end
    if st.st_size > MAX_FILE_BYTES:
        raise StoreError(
            f"{path} is too large ({st.st_size // 2**20} MB; the limit is {MAX_FILE_BYTES // 2**20} MB)"
        )
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_FILE_BYTES + 1)  # it may have grown since stat
    except OSError as exc:
        raise StoreError(f"cannot read {path}: {_os_reason(exc)}") from None
    if len(raw) > MAX_FILE_BYTES:
        raise StoreError(f"{path} is too large (the limit is {MAX_FILE_BYTES // 2**20} MB)")
    try:
        text = raw.decode("utf-8-sig")  # tolerate the BOM some Windows editors add
    except UnicodeDecodeError as exc:
        raise StoreError(f"{path} is not UTF-8 text (bad byte at offset {exc.start})") from None
    saved = parse_session(text, source=str(path))
    saved.path = path
    return saved


class SessionStore:
    """The autosave directory: `<id>.json` per session, ids sortable by start time."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = Path(root) if root is not None else data_dir() / "sessions"
        self.skipped: list[tuple[Path, str]] = []  # unreadable files the last list() passed over, and why
        self._held: tuple[str, FileLock, weakref.finalize] | None = None  # the session this process writes

    @staticmethod
    def new_id() -> str:
        """Local start time plus 4 random hex digits, e.g. 20261122-021755-ab12."""
        return f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"

    def path(self, session_id: str) -> Path:
        return self.root / f"{check_id(session_id)}.json"

    def _lock(self, session_id: str) -> FileLock:
        """The lock one writer of `session_id` holds (StoreError for an id this program never writes)."""
        return FileLock(self.root / f"{check_id(session_id)}.lock")

    def sweep(self) -> list[Path]:
        """Remove the temporary files of autosaves that a killed process left (kill -9 between the write and
        the rename); the removed paths. A temp file of a session that a live process holds is its write in
        progress and stays."""
        removed: list[Path] = []
        try:
            files = list(self.root.iterdir())
        except OSError:
            return removed
        for file in files:
            match = _TEMP.fullmatch(file.name)
            if match is None:
                continue
            session_id = match["id"]
            try:
                lock = self._lock(session_id)
            except StoreError:
                continue  # not a name this program writes
            if self._held is not None and self._held[0] == session_id:
                continue
            try:
                if not lock.acquire():
                    continue  # a live process writes this session
                if not lock.held and time.time() - file.stat().st_mtime < _TEMP_AGE_WITHOUT_LOCKS:
                    continue
                file.unlink()
                removed.append(file)
            except OSError:
                continue
            finally:
                lock.release()
        return removed

    def claim(self, session_id: str) -> int | bool:
        """Hold `session_id` for this process's autosaves, letting go of the session held before: True.
        When another live process holds it: its pid (or False when unknown), and nothing changes."""
        if self._held is not None and self._held[0] == session_id:
            return True
        lock = self._lock(session_id)
        try:
            private_dir(self.root)
            if not lock.acquire():
                return lock.owner() or False
        except OSError:  # a read-only folder: nothing to guard, and autosave will say why it fails
            return True
        self.release()
        self._held = (session_id, lock, weakref.finalize(self, lock.release))  # also at exit
        return True

    def release(self) -> None:
        """Let go of the session held for autosave (at exit this happens by itself)."""
        held, self._held = self._held, None
        if held is not None:
            held[2]()

    def autosave(
        self,
        session_id: str,
        conversation: Conversation,
        *,
        model: str,
        settings_overrides: Mapping[str, Any],
        seed: int,
        created: str | None = None,
        piped: bool = False,
        fingerprint: Mapping[str, Any] | None = None,
    ) -> Path:
        """Write the session after a completed turn; StoreError (one line) when the disk says no."""
        path = self.path(session_id)
        text = dump_session(
            conversation,
            model=model,
            settings_overrides=settings_overrides,
            seed=seed,
            session_id=session_id,
            created=created,
            piped=piped,
            fingerprint=fingerprint,
        )
        try:
            private_dir(self.root)
            atomic_write_text(path, text)
        except OSError as exc:
            raise StoreError(f"autosave failed: cannot write {path}: {_os_reason(exc)}") from None
        return path

    def list(self) -> list[SessionFile]:
        """Every readable session, newest first; corrupt files are passed over (see `skipped`)."""
        self.skipped = []
        sessions = []
        try:
            files = sorted(self.root.glob("*.json"))
        except OSError:
            return []
        for file in files:
            try:
                sessions.append(load_file(file))
            except StoreError as exc:
                self.skipped.append((file, str(exc)))
        sessions.sort(key=lambda s: (s.updated_at, s.id), reverse=True)
        return sessions

    def resolve(self, ref: str) -> SessionFile:
        """ "last" (the newest session not written by pipe runs alone, if any), an exact id, a unique id
        prefix or a 1-based number from list()."""
        ref = ref.strip()
        sessions = self.list()
        if not sessions:
            raise StoreError(f"no saved sessions in {self.root}")
        if not ref:
            raise StoreError("which session? give last, a number, or an id (prefix)")
        if ref.lower() == "last":  # a pipe run only when no interactive session was ever saved
            return next((s for s in sessions if not s.piped), sessions[0])
        number = plain_int(ref)
        if number is not None and 1 <= number <= len(sessions):
            return sessions[number - 1]
        for s in sessions:
            if s.id == ref:
                return s
        matches = [s for s in sessions if s.id.startswith(ref)]
        if len(matches) == 1:
            return matches[0]
        if matches:
            shown = ", ".join(s.id for s in matches[:5]) + (", …" if len(matches) > 5 else "")
            raise StoreError(f"{ref!r} matches {len(matches)} sessions ({shown}); give more of the id")
        shown = "; ".join(f"{i} {s.id} {s.title}" for i, s in enumerate(sessions[:3], 1))
        more = f"; … ({len(sessions)} in all)" if len(sessions) > 3 else ""
        asked = ref if len(ref) <= 40 else ref[:39] + "…"
        raise StoreError(f"no session {asked!r}; saved: {shown}{more}")
