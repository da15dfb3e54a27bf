"""The conversation: system prompt and messages, with marks for answers that were cut short. Plain data: the
session file's reading and writing live in `conversation.file` (the version) and `conversation.fields` (the
optional per-message fields)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from qwenchat.errors import UserError
from qwenchat.images.ref import ImageRef

if TYPE_CHECKING:
    from qwenchat.probs.record import TokenProb

DEFAULT_SYSTEM = "You are a helpful assistant."
ROLES = ("user", "assistant", "tool")


class ConversationFormatError(UserError, ValueError):
    """A saved conversation that cannot be read; the message says exactly why."""


@dataclass(frozen=True)
class Alternative:
    """Another answer to the same message, kept beside the one in the history (`:compare` keeps its variants
    there, `:pick` swaps one in). It lives in the session file only: the prompt sees the message's content."""

    content: str
    label: str  # "A", "B", ... ("orig": the answer a :pick replaced)
    settings: dict[str, Any] = field(default_factory=dict)  # what the variant ran with (seed, system, ...)
    interrupted: bool = False

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"label": self.label, "content": self.content, "settings": dict(self.settings)}
        if self.interrupted:
            d["interrupted"] = True
        return d


@dataclass
class Message:
    role: str
    content: str
    interrupted: bool = False  # the answer was cut by Ctrl-C, an error or max_new_tokens
    probs: list[TokenProb] | None = None  # per-token data, recorded with `:probs on` (qwenchat.probs.record)
    replaces: Message | None = None  # the answer a `:branch` replaced; `:undo` brings it back
    # Other answers to the same message (`:compare` variants): never in the prompt.
    alternatives: tuple[Alternative, ...] = ()
    tool_calls: list[dict[str, Any]] | None = (
        None  # assistant: [{"id", "name", "arguments"}] (qwenchat.tools)
    )
    tool_call_id: str | None = None  # tool: the call this result answers
    name: str | None = None  # tool: the tool's name
    # user: the images attached to the message (path, size, pixels, SHA-256; never the bytes)
    images: tuple[ImageRef, ...] = ()
    # user: images of a loaded session whose file is gone or changed: kept in the file, never in the prompt
    missing_images: tuple[ImageRef, ...] = ()

    def to_chat(self) -> dict[str, Any]:
        """The message in the shape chat templates take: the calls as `tool_calls` (arguments an object), a
        result with its call's id and tool name."""
        d: dict[str, Any] = {"role": self.role, "content": self.content}
        if self.images:  # each engine turns them into its own form (chat template parts, data URIs)
            d["images"] = list(self.images)
        if self.tool_calls:
            d["tool_calls"] = chat_calls(self.tool_calls)
        if self.role == "tool":
            if self.tool_call_id:
                d["tool_call_id"] = self.tool_call_id
            if self.name:
                d["name"] = self.name
        return d


def chat_calls(calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Stored calls in the shape chat templates (transformers, GGUF) take: arguments as an object."""
    return [
        {"id": c["id"], "type": "function", "function": {"name": c["name"], "arguments": c["arguments"]}}
        for c in calls
    ]


@dataclass
class Conversation:
    system: str | None = DEFAULT_SYSTEM
    messages: list[Message] = field(default_factory=list)

    def add_user(self, text: str, images: tuple[ImageRef, ...] = ()) -> None:
        self.messages.append(Message("user", text, images=images))

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
