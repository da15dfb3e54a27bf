"""The session file format: a versioned JSON document, written by `dump_session`, read back strictly by
`parse_session`.

A session file may come from anywhere (a colleague, a download), so reading it trusts nothing: every field is
type-checked, generation settings go through the same checks as `:conf`, and sizes are bounded. Never eval.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from qwenchat.conversation.export import conversation_title
from qwenchat.conversation.fields import message_from_dict, message_to_dict
from qwenchat.conversation.model import Conversation, ConversationFormatError
from qwenchat.errors import UserError

FORMAT = "qwenchat-session"
# The one version of the session file, written on the file and on its conversation alike.
# 1: system prompt and user/assistant messages. 2: optional per-message fields (an answer's token
# probabilities, the answer a :branch replaced, :compare alternatives, tool calls and tool results).
# Files written before the two numbers were one say 1 on the file and 1 or 2 on the conversation: they load
# as before, since each number is checked against VERSION and the conversation's own says which fields it has.
VERSION = 2
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
class SessionFile:
    """What one session file holds: a chat session (`chat.ChatSession`) as saved, read back by
    `parse_session`. `SessionStore` keeps these files."""

    id: str
    created: str  # ISO 8601, as written
    updated: str
    model: str
    settings: dict[str, Any]
    seed: int
    conversation: Conversation
    path: Path | None = field(default=None, compare=False)  # where it was read from
    piped: bool = False  # written by pipe runs only: `last` passes over it
    fingerprint: dict[str, Any] | None = None  # the setup that wrote it (models/identity.py), when known
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


def check_id(session_id: Any, where: str = "session id") -> str:
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
    # the long tail is the transformers engine's settings (transformers is imported only when one appears)
    from qwenchat.engines.generation_config import generation_schema
    from qwenchat.images.settings import with_image_settings
    from qwenchat.settings import check_value

    def long_tail():  # a vision model's pixel budget too (min_pixels, max_pixels)
        return with_image_settings(generation_schema())

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
            checked[key] = check_value(key, value, long_tail)
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
    fingerprint: Mapping[str, Any] | None = None,
) -> str:
    """The session file's text; `created` defaults to now, `updated` is now unless given."""
    check_id(session_id)
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
        "conversation": conversation_to_dict(conversation),
    }
    if piped:  # only then: files of interactive sessions stay as they were
        doc["piped"] = True
    if fingerprint:
        doc["fingerprint"] = dict(fingerprint)
    try:
        text = json.dumps(doc, ensure_ascii=False, indent=2, allow_nan=False) + "\n"
    except (TypeError, ValueError) as exc:
        raise StoreError(f"cannot save the session: {exc}") from None
    return _SURROGATE.sub("\ufffd", text)  # UTF-8 cannot hold a lone surrogate: never fail a save on one


def conversation_to_dict(conversation: Conversation) -> dict[str, Any]:
    return {
        "version": VERSION,
        "system": conversation.system,
        "messages": [message_to_dict(m) for m in conversation.messages],
    }


def conversation_from_dict(data: Any) -> Conversation:
    """Strict: a wrong type anywhere is an error naming the place, never a half-read conversation."""
    if not isinstance(data, dict):
        raise ConversationFormatError("not a qwenchat conversation (expected a JSON object)")
    version = data.get("version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise ConversationFormatError("missing or invalid 'version'")
    if version > VERSION:
        raise ConversationFormatError(
            f"written by a newer qwenchat (format {version}, this one reads up to {VERSION})"
        )
    system = data.get("system")
    if system is not None and not isinstance(system, str):
        raise ConversationFormatError("'system' must be a string or null")
    raw = data.get("messages")
    if not isinstance(raw, list):
        raise ConversationFormatError("'messages' must be a list")
    messages = [message_from_dict(m, version, f"message {i + 1}") for i, m in enumerate(raw)]
    return Conversation(system=system, messages=messages)


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


def parse_session(text: str, *, source: str = "file") -> SessionFile:
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
        raise fail(f"written by a newer qwenchat (version {version}); this one reads up to version {VERSION}")
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
    fingerprint = check_fingerprint(data.get("fingerprint"), fail)
    try:
        conversation = conversation_from_dict(data.get("conversation"))
    except ConversationFormatError as exc:
        raise fail(f"conversation: {exc}") from None
    if conversation.system is not None and len(conversation.system) > MAX_MESSAGE_CHARS:
        raise fail(f"the system prompt is over {MAX_MESSAGE_CHARS:,} characters")
    for i, m in enumerate(conversation.messages):
        if len(m.content) > MAX_MESSAGE_CHARS:
            raise fail(f"message {i + 1} is over {MAX_MESSAGE_CHARS:,} characters")
    return SessionFile(
        session_id,
        times["created"],
        times["updated"],
        model,
        settings,
        seed,
        conversation,
        piped=piped,
        replaced=replaced,
        fingerprint=fingerprint,
    )


def check_fingerprint(value: Any, fail: Callable[[str], StoreError]) -> dict[str, Any] | None:
    """A saved fingerprint: a flat object of short printable strings, numbers, booleans and nulls."""
    if value is None:
        return None
    if not isinstance(value, dict) or len(value) > 64:
        raise fail("'fingerprint' must be an object of at most 64 fields")
    for key, item in value.items():
        if not (isinstance(key, str) and key.isprintable() and len(key) <= 64):
            raise fail("'fingerprint' has a bad field name")
        if isinstance(item, str):
            if len(item) > 500 or not item.isprintable():
                raise fail(f"'fingerprint' field {key!r} must be a short printable string")
        elif item is not None and not isinstance(item, (bool, int, float)):
            raise fail(f"'fingerprint' field {key!r} must be a string, number, boolean or null")
    return dict(value)
