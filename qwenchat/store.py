"""Saved sessions: one JSON file each, written atomically, read back strictly.

A session file may come from anywhere (a colleague, a download), so reading it trusts nothing: every field is
type-checked, generation settings go through the same checks as `:conf`, and sizes are bounded. Never eval.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import tempfile
import time
import weakref
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from qwenchat.errors import UserError
from qwenchat.export import conversation_title
from qwenchat.lock import FileLock
from qwenchat.numbers import plain_int
from qwenchat.paths import data_dir, private_dir
from qwenchat.session import Conversation, SessionFormatError

FORMAT = "qwenchat-session"
VERSION = 1
MAX_FILE_BYTES = 50 * 1024 * 1024
MAX_MESSAGE_CHARS = 5_000_000
MAX_SETTINGS = 200
MAX_ERROR_CHARS = 300

_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")
_SCALARS = (str, int, float, bool, type(None))
_SURROGATE = re.compile("[\ud800-\udfff]")  # half of a UTF-16 pair: not a character on its own


class StoreError(UserError):
    """A session that cannot be saved or loaded; str() is one line saying exactly what is wrong."""

    def __init__(self, message: str) -> None:
        # Paths, keys and library messages may carry newlines or be huge: keep it one short line.
        text = " ".join(str(message).split())
        if len(text) > MAX_ERROR_CHARS:
            text = text[: MAX_ERROR_CHARS - 1] + "…"
        super().__init__(text)


@dataclass
class SavedSession:
    id: str
    created: str  # ISO 8601, as written
    updated: str
    model: str
    settings: dict[str, Any]
    seed: int
    conversation: Conversation
    path: Path | None = field(default=None, compare=False)  # where it was read from
    piped: bool = False  # written by pipe runs only: `last` passes over it
    replaced: int = field(default=0, compare=False)  # lone surrogates in the file, now U+FFFD

    @property
    def title(self) -> str:
        return conversation_title(self.conversation)

    @property
    def updated_at(self) -> datetime:
        return _parse_time(self.updated)


def now_stamp() -> str:
    """Now, as a session's `created`/`updated` stamp: local time with its UTC offset."""
    return datetime.now(timezone.utc).astimezone().isoformat(timespec="seconds")


def _parse_time(text: str) -> datetime:
    """An aware datetime; a time without a zone is taken as UTC so times always compare."""
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"  # Python 3.10's fromisoformat lacks "Z"
    dt = datetime.fromisoformat(text)
    return dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)


def _check_id(session_id: Any, where: str = "session id") -> str:
    if not isinstance(session_id, str) or not _ID.fullmatch(session_id):
        raise StoreError(f"{where} {session_id!r:.60} is not valid (letters, digits, '.', '_' and '-' only)")
    return session_id


def _json_value(value: Any, depth: int = 0) -> bool:
    """A JSON scalar or a list of them (nested lists allowed, as for bad_words_ids); no objects."""
    if isinstance(value, _SCALARS):
        return True
    return isinstance(value, list) and depth < 4 and all(_json_value(v, depth + 1) for v in value)


def check_settings(settings: Any, where: str = "settings") -> dict[str, Any]:
    """Overrides as `:conf` would accept them one by one; the first bad one raises StoreError naming it."""
    from qwenchat.settings import check_value  # lazily: transformers is imported only when there is a setting

    if not isinstance(settings, dict):
        raise StoreError(f"{where} must be an object")
    if len(settings) > MAX_SETTINGS:
        raise StoreError(f"{where} has {len(settings)} entries; at most {MAX_SETTINGS} are read")
    checked: dict[str, Any] = {}
    for key, value in settings.items():
        if not isinstance(key, str):
            raise StoreError(f"{where}: setting names must be strings, got {key!r:.40}")
        if len(key) > 100:
            raise StoreError(f"{where}: setting name {key[:40]!r}… is too long")
        if not _json_value(value):
            raise StoreError(f"{where}: {key!r} must be a number, string, boolean, null or list")
        try:
            checked[key] = check_value(key, value)
        except (ValueError, TypeError) as exc:  # ConfigError is a ValueError
            raise StoreError(f"{where}: {exc}") from None
    return checked


def dump_session(
    conversation: Conversation,
    *,
    model: str,
    settings_overrides: Mapping[str, Any],
    seed: int,
    session_id: str,
    created: str | None = None,
    updated: str | None = None,
    piped: bool = False,
) -> str:
    """The session file's text; `created` defaults to now, `updated` is now unless given."""
    _check_id(session_id)
    now = now_stamp()
    doc = {
        "format": FORMAT,
        "version": VERSION,
        "id": session_id,
        "created": created or now,
        "updated": updated or now,
        "model": model,
        "settings": dict(settings_overrides),
        "seed": seed,
        "conversation": conversation.to_dict(),
    }
    if piped:  # only then: files of interactive sessions stay as they were
        doc["piped"] = True
    try:
        text = json.dumps(doc, ensure_ascii=False, indent=2, allow_nan=False) + "\n"
    except (TypeError, ValueError) as exc:
        raise StoreError(f"cannot save the session: {exc}") from None
    return _SURROGATE.sub("\ufffd", text)  # UTF-8 cannot hold a lone surrogate: never fail a save on one


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed")


def _replace_lone_surrogates(data: Any) -> tuple[Any, int]:
    """JSON reads an escaped lone surrogate ("\\ud800") as a str that no file or terminal can take: each
    becomes U+FFFD, visibly, and the count says how many (0: `data` is returned as it was)."""
    stack = [data]
    while stack:  # a loop, not recursion: the nesting is whatever the file says
        item = stack.pop()
        if isinstance(item, str):
            if _SURROGATE.search(item):
                text, count = _SURROGATE.subn("\ufffd", json.dumps(data, ensure_ascii=False))
                return json.loads(text), count
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return data, 0


def parse_session(text: str, *, source: str = "file") -> SavedSession:
    """A session file's text, checked field by field; StoreError("<source>: <problem>") on anything wrong."""

    def fail(problem: str) -> StoreError:
        return StoreError(f"{source}: {problem}")

    if len(text) > MAX_FILE_BYTES:
        raise fail(f"too large ({len(text) // 2**20} MB; the limit is {MAX_FILE_BYTES // 2**20} MB)")
    try:
        data = json.loads(text, parse_constant=_reject_constant)  # NaN/Infinity are not JSON
    except json.JSONDecodeError as exc:
        raise fail(f"not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from None
    except RecursionError:
        raise fail("not a qwenchat session file (JSON nested too deeply)") from None
    except ValueError as exc:  # NaN, or an integer with thousands of digits
        raise fail(f"not valid JSON ({exc})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise fail("not a qwenchat session file")
    try:
        data, replaced = _replace_lone_surrogates(data)
    except (ValueError, RecursionError):  # pragma: no cover - what json.loads read, json.dumps writes
        raise fail("not a qwenchat session file") from None
    version = data.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise fail("missing or invalid 'version'")
    if version > VERSION:
        raise fail(f"written by a newer qwenchat (version {version}); this one reads version {VERSION}")
    session_id = data.get("id")
    if not isinstance(session_id, str) or not _ID.fullmatch(session_id):
        raise fail("'id' must be a string of letters, digits, '.', '_' and '-'")
    times = {}
    for key in ("created", "updated"):
        value = data.get(key)
        try:
            if not isinstance(value, str) or len(value) > 64:
                raise ValueError
            _parse_time(value)
        except ValueError:
            raise fail(f"'{key}' must be an ISO 8601 date and time") from None
        times[key] = value
    model = data.get("model")
    if not isinstance(model, str) or len(model) > 1000:
        raise fail("'model' must be a string")
    if not model.isprintable():
        raise fail("'model' contains control characters")
    seed = data.get("seed")
    if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < 2**32:
        raise fail("'seed' must be an integer between 0 and 4294967295")
    piped = data.get("piped", False)
    if not isinstance(piped, bool):
        raise fail("'piped' must be true or false")
    settings = check_settings(data.get("settings"), f"{source}: 'settings'")
    try:
        conversation = Conversation.from_dict(data.get("conversation"))
    except SessionFormatError as exc:
        raise fail(f"conversation: {exc}") from None
    if conversation.system is not None and len(conversation.system) > MAX_MESSAGE_CHARS:
        raise fail(f"the system prompt is over {MAX_MESSAGE_CHARS:,} characters")
    for i, m in enumerate(conversation.messages):
        if len(m.content) > MAX_MESSAGE_CHARS:
            raise fail(f"message {i + 1} is over {MAX_MESSAGE_CHARS:,} characters")
    return SavedSession(
        session_id,
        times["created"],
        times["updated"],
        model,
        settings,
        seed,
        conversation,
        piped=piped,
        replaced=replaced,
    )


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
) -> SavedSession:
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
    )
    try:
        atomic_write_text(path, text)
    except OSError as exc:
        raise StoreError(f"cannot write {path}: {_os_reason(exc)}") from None
    return SavedSession(
        session_id, created, updated, model, dict(settings_overrides), seed, conversation, path, piped
    )


def load_file(path: str | os.PathLike[str]) -> SavedSession:
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
        return self.root / f"{_check_id(session_id)}.json"

    def claim(self, session_id: str) -> int | bool:
        """Hold `session_id` for this process's autosaves, letting go of the session held before: True.
        When another live process holds it: its pid (or False when unknown), and nothing changes."""
        if self._held is not None and self._held[0] == session_id:
            return True
        lock = FileLock(self.root / f"{_check_id(session_id)}.lock")
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
        )
        try:
            private_dir(self.root)
            atomic_write_text(path, text)
        except OSError as exc:
            raise StoreError(f"autosave failed: cannot write {path}: {_os_reason(exc)}") from None
        return path

    def list(self) -> list[SavedSession]:
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

    def resolve(self, ref: str) -> SavedSession:
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
