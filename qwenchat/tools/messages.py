"""The tool fields of a stored message (session format 2): written, read back strictly, and handed to chat
templates. Kept out of session.py so the conversation itself stays about turns."""

from __future__ import annotations

from typing import Any

from qwenchat.tools.calls import chat_calls, check_stored_calls


def tool_fields(m: Any) -> dict[str, Any]:
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


def chat_message(m: Any) -> dict[str, Any]:
    """A message for a chat template: the calls as `tool_calls` (arguments an object), a result with its
    call's id and tool name."""
    d: dict[str, Any] = {"role": m.role, "content": m.content}
    if m.tool_calls:
        d["tool_calls"] = chat_calls(m.tool_calls)
    if m.role == "tool":
        if m.tool_call_id:
            d["tool_call_id"] = m.tool_call_id
        if m.name:
            d["name"] = m.name
    return d
