"""The conversation: system prompt and messages, with marks for answers that were cut short."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from qwenchat.errors import UserError
from qwenchat.tools.messages import chat_message, read_tool_fields, tool_fields

if TYPE_CHECKING:
    from qwenchat.probs.record import TokenProb

DEFAULT_SYSTEM = "You are a helpful assistant."
# 2: optional per-message fields: an answer's token probabilities, the answer a :branch replaced, the
# :compare variants (alternatives), tool calls and tool results; a version 1 file reads as before.
FORMAT_VERSION = 2
ROLES = ("user", "assistant", "tool")


class SessionFormatError(UserError, ValueError):
    """A saved conversation that cannot be read; the message says exactly why."""


@dataclass
class Message:
    role: str
    content: str
    interrupted: bool = False  # the answer was cut by Ctrl-C, an error or max_new_tokens
    probs: list[TokenProb] | None = None  # per-token data, recorded with `:probs on` (qwenchat.probs.record)
    replaces: Message | None = None  # the answer a `:branch` replaced; `:undo` brings it back
    # Other answers to the same message (`:compare` variants; see alternatives.py): never in the prompt.
    alternatives: tuple[Any, ...] = ()
    tool_calls: list[dict[str, Any]] | None = None  # assistant: [{"id", "name", "arguments"}] (tools.py)
    tool_call_id: str | None = None  # tool: the call this result answers
    name: str | None = None  # tool: the tool's name

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"role": self.role, "content": self.content}
        if self.interrupted:
            d["interrupted"] = True
        d.update(tool_fields(self))
        if self.probs is not None or self.replaces is not None:
            from qwenchat.probs.file import extras_to_dict

            d.update(extras_to_dict(self))
        if self.alternatives:
            d["alternatives"] = [a.to_dict() for a in self.alternatives]
        return d

    def to_chat(self) -> dict[str, Any]:
        """The message in the shape chat templates take."""
        return chat_message(self)


@dataclass
class Conversation:
    system: str | None = DEFAULT_SYSTEM
    messages: list[Message] = field(default_factory=list)

    def add_user(self, text: str) -> None:
        self.messages.append(Message("user", text))

    def add_assistant(self, text: str, interrupted: bool = False) -> None:
        self.messages.append(Message("assistant", text, interrupted))

    def clear(self) -> None:
        self.messages.clear()

    def exchanges(self) -> int:
        return sum(1 for m in self.messages if m.role == "user")

    def to_chat(self) -> list[dict[str, Any]]:
        """Messages in the shape chat templates take."""
        chat = [{"role": "system", "content": self.system}] if self.system is not None else []
        chat.extend(m.to_chat() for m in self.messages)
        return chat

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": FORMAT_VERSION,
            "system": self.system,
            "messages": [m.to_dict() for m in self.messages],
        }

    @classmethod
    def from_dict(cls, data: Any) -> Conversation:
        """Strict: a wrong type anywhere is an error naming the place, never a half-read conversation."""
        if not isinstance(data, dict):
            raise SessionFormatError("not a qwenchat conversation (expected a JSON object)")
        version = data.get("version")
        if not isinstance(version, int) or isinstance(version, bool):
            raise SessionFormatError("missing or invalid 'version'")
        if version > FORMAT_VERSION:
            raise SessionFormatError(
                f"written by a newer qwenchat (format {version}, this one reads up to {FORMAT_VERSION})"
            )
        system = data.get("system")
        if system is not None and not isinstance(system, str):
            raise SessionFormatError("'system' must be a string or null")
        raw = data.get("messages")
        if not isinstance(raw, list):
            raise SessionFormatError("'messages' must be a list")
        messages = []
        for i, m in enumerate(raw):
            if not isinstance(m, dict):
                raise SessionFormatError(f"message {i + 1} is not an object")
            role, content = m.get("role"), m.get("content")
            if role not in ROLES or (role == "tool" and version < 2):  # tool messages came with format 2
                expected = "user, assistant or tool" if version >= 2 else "user or assistant"
                raise SessionFormatError(f"message {i + 1} has role {role!r}; expected {expected}")
            if not isinstance(content, str):
                raise SessionFormatError(f"message {i + 1} has no text content")
            interrupted = m.get("interrupted", False)
            if not isinstance(interrupted, bool):
                raise SessionFormatError(f"message {i + 1}: 'interrupted' must be true or false")
            try:
                extra = read_tool_fields(m, role, f"message {i + 1}") if version >= 2 else {}
            except ValueError as exc:
                raise SessionFormatError(str(exc)) from None
            msg = Message(role, content, interrupted, **extra)
            if "alternatives" in m:
                from qwenchat.conversation.alternatives import parse_alternatives

                msg.alternatives = parse_alternatives(m["alternatives"], f"message {i + 1}")
            if "probs" in m or "replaces" in m:
                from qwenchat.probs.file import read_extras

                msg.probs, msg.replaces = read_extras(m, f"message {i + 1}", Message, SessionFormatError)
            messages.append(msg)
        return cls(system=system, messages=messages)
