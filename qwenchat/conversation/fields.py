"""A message in the session file: its required fields and the optional ones features add (an answer's token
data and the answers a `:branch` replaced, `:compare` alternatives, tool calls and results).

The codecs live here, beside the conversation, rather than in each feature: the file format is one document
with one version (`conversation.file`), and a feature that stores something on a message uses these (its
records come from its own vocabulary module, e.g. `probs.record`). A session file may come from anywhere, so
every field is read strictly: a hostile file gets one ConversationFormatError line, never a half-read message.
"""

from __future__ import annotations

from typing import Any

from qwenchat.conversation.model import ROLES, Alternative, ConversationFormatError, Message
from qwenchat.images.ref import ImageRef
from qwenchat.probs.record import ProbsFormatError, probs_from_list, probs_to_list

MAX_REPLACED = 100  # answers replaced by :branch kept behind one answer; deeper is a hostile file
MAX_ALTERNATIVES = 200  # per message
MAX_LABEL_CHARS = 40
MAX_IMAGES = 100  # per message
MAX_ALTERNATIVE_CHARS = 5_000_000
_SCALARS = (str, int, float, bool, type(None))


def message_to_dict(m: Message) -> dict[str, Any]:
    d: dict[str, Any] = {"role": m.role, "content": m.content}
    if m.interrupted:
        d["interrupted"] = True
    d.update(tool_fields(m))
    if m.probs is not None:
        d["probs"] = probs_to_list(m.probs)
    if m.replaces is not None:
        d["replaces"] = message_to_dict(m.replaces)
    if m.alternatives:
        d["alternatives"] = [a.to_dict() for a in m.alternatives]
    d.update(image_fields(m))
    return d


def message_from_dict(m: Any, version: int, where: str) -> Message:
    """One message of a conversation written in format `version`; ConversationFormatError naming `where`."""
    if not isinstance(m, dict):
        raise ConversationFormatError(f"{where} is not an object")
    role, content = m.get("role"), m.get("content")
    if role not in ROLES or (role == "tool" and version < 2):  # tool messages came with format 2
        expected = "user, assistant or tool" if version >= 2 else "user or assistant"
        raise ConversationFormatError(f"{where} has role {role!r}; expected {expected}")
    if not isinstance(content, str):
        raise ConversationFormatError(f"{where} has no text content")
    interrupted = m.get("interrupted", False)
    if not isinstance(interrupted, bool):
        raise ConversationFormatError(f"{where}: 'interrupted' must be true or false")
    try:
        extra = read_tool_fields(m, role, where) if version >= 2 else {}
    except ValueError as exc:
        raise ConversationFormatError(str(exc)) from None
    msg = Message(role, content, interrupted, **extra)
    if "alternatives" in m:
        msg.alternatives = parse_alternatives(m["alternatives"], where)
    if "probs" in m or "replaces" in m:
        msg.probs, msg.replaces = read_extras(m, where)
    if "images" in m or "missing_images" in m:
        if role != "user":
            raise ConversationFormatError(f"{where}: only a message of yours has images")
        msg.images = read_images(m.get("images", []), where)
        msg.missing_images = read_images(m.get("missing_images", []), where)
    return msg


# -- images ---------------------------------------------------------------------------------------
def image_fields(m: Message) -> dict[str, Any]:
    """A message's images in its saved form (path, size, pixels, SHA-256): nothing without images, so a
    text message is saved as before."""
    d: dict[str, Any] = {}
    if m.images:
        d["images"] = [r.to_dict() for r in m.images]
    if m.missing_images:
        d["missing_images"] = [r.to_dict() for r in m.missing_images]
    return d


def read_images(raw: Any, where: str) -> tuple[ImageRef, ...]:
    """The `images` list of one message, strictly; ConversationFormatError naming the place."""
    if not isinstance(raw, list) or len(raw) > MAX_IMAGES:
        raise ConversationFormatError(f"{where}: 'images' must be a list of at most {MAX_IMAGES}")
    out = []
    for i, d in enumerate(raw, start=1):
        try:
            out.append(ImageRef.from_dict(d))
        except ValueError as exc:
            raise ConversationFormatError(f"{where}, image {i}: {exc}") from None
    return tuple(out)


# -- tool calls and results -----------------------------------------------------------------------
def tool_fields(m: Message) -> dict[str, Any]:
    """What a message adds to its saved form: nothing for a plain user or assistant message."""
    d: dict[str, Any] = {}
    if m.tool_calls:
        d["tool_calls"] = [dict(c) for c in m.tool_calls]
    if m.role == "tool":
        if m.tool_call_id is not None:
            d["tool_call_id"] = m.tool_call_id
        if m.name is not None:
            d["name"] = m.name
    return d


def read_tool_fields(data: dict[str, Any], role: str, where: str) -> dict[str, Any]:
    """The optional tool fields of a saved message, checked (ValueError in words); {} for a v1 message."""
    out: dict[str, Any] = {}
    if "tool_calls" in data and data["tool_calls"] is not None:
        if role != "assistant":
            raise ValueError(f"{where}: only an assistant message has 'tool_calls'")
        out["tool_calls"] = check_stored_calls(data["tool_calls"], where) or None
    for key in ("tool_call_id", "name"):
        value = data.get(key)
        if value is None:
            continue
        if role != "tool":
            raise ValueError(f"{where}: only a tool message has {key!r}")
        if not isinstance(value, str):
            raise ValueError(f"{where}: {key!r} must be a string")
        out[key] = value
    return out


def check_stored_calls(value: Any, where: str) -> list[dict[str, Any]]:
    """An assistant message's `tool_calls` from a session file, strictly; ValueError in words."""
    if not isinstance(value, list):
        raise ValueError(f"{where}: 'tool_calls' must be a list")
    out = []
    for j, c in enumerate(value, start=1):
        if not isinstance(c, dict):
            raise ValueError(f"{where}: tool call {j} is not an object")
        cid, name, args = c.get("id", ""), c.get("name"), c.get("arguments", {})
        if not isinstance(cid, str) or not isinstance(name, str) or not name:
            raise ValueError(f"{where}: tool call {j} needs a string 'name' (and 'id')")
        if not isinstance(args, dict):
            raise ValueError(f"{where}: tool call {j}: 'arguments' must be an object")
        out.append({"id": cid, "name": name, "arguments": args})
    return out


# -- token data and replaced answers (`probs`, `replaces`) ------------------------------------------
def read_extras(m: dict[str, Any], where: str) -> tuple[Any, Message | None]:
    """(probs, replaces) of message dict `m`; `replaces` is a chain of earlier answers, read iteratively.
    Both are optional, so a format-1 message (which has neither) loads as it is."""
    if m.get("role") != "assistant":
        raise ConversationFormatError(f"{where}: only an answer can carry token data or a replaced answer")
    head: Message | None = None
    tail: Message | None = None
    probs: Any = None
    current: Any = m
    for depth in range(MAX_REPLACED + 1):
        p = current.get("probs")
        try:
            p = None if p is None else probs_from_list(p, where)
        except ProbsFormatError as exc:
            raise ConversationFormatError(str(exc)) from None
        if depth == 0:
            probs = p
        else:
            msg = Message("assistant", current["content"], current.get("interrupted", False), p)
            if tail is None:
                head = msg
            else:
                tail.replaces = msg
            tail = msg
        nxt = current.get("replaces")
        if nxt is None:
            return probs, head
        if not isinstance(nxt, dict) or not isinstance(nxt.get("content"), str):
            raise ConversationFormatError(
                f"{where}: 'replaces' must be an earlier answer (an object with its content)"
            )
        if not isinstance(nxt.get("interrupted", False), bool):
            raise ConversationFormatError(f"{where}: 'interrupted' must be true or false")
        current = nxt
    raise ConversationFormatError(f"{where}: more than {MAX_REPLACED} replaced answers")


# -- `:compare` alternatives ----------------------------------------------------------------------
def _json_value(value: Any, depth: int = 0) -> bool:
    if isinstance(value, _SCALARS):
        return not isinstance(value, float) or value == value and abs(value) != float("inf")
    return isinstance(value, list) and depth < 4 and all(_json_value(v, depth + 1) for v in value)


def parse_alternatives(raw: Any, where: str) -> tuple[Alternative, ...]:
    """The `alternatives` list of one message; ConversationFormatError naming the place on anything wrong."""
    if not isinstance(raw, list):
        raise ConversationFormatError(f"{where}: 'alternatives' must be a list")
    if len(raw) > MAX_ALTERNATIVES:
        raise ConversationFormatError(f"{where}: more than {MAX_ALTERNATIVES} alternatives")
    out = []
    for i, alt in enumerate(raw):
        here = f"{where}, alternative {i + 1}"
        if not isinstance(alt, dict):
            raise ConversationFormatError(f"{here} is not an object")
        content, label = alt.get("content"), alt.get("label")
        if not isinstance(content, str) or len(content) > MAX_ALTERNATIVE_CHARS:
            raise ConversationFormatError(f"{here} has no text content")
        if not isinstance(label, str) or not label or len(label) > MAX_LABEL_CHARS or not label.isprintable():
            raise ConversationFormatError(f"{here}: 'label' must be a short printable string")
        settings = alt.get("settings", {})
        if not isinstance(settings, dict) or len(settings) > 200:
            raise ConversationFormatError(f"{here}: 'settings' must be an object")
        for key, value in settings.items():
            if not isinstance(key, str) or len(key) > 100 or not _json_value(value):
                raise ConversationFormatError(f"{here}: setting {key!r:.40} must be a number, string or list")
            if isinstance(value, str) and len(value) > MAX_ALTERNATIVE_CHARS:
                raise ConversationFormatError(f"{here}: setting {key!r:.40} is too long")
        interrupted = alt.get("interrupted", False)
        if not isinstance(interrupted, bool):
            raise ConversationFormatError(f"{here}: 'interrupted' must be true or false")
        out.append(Alternative(content, label, dict(settings), interrupted))
    return tuple(out)
