"""The session's side of tool calling: which tools and mocks are loaded, the calls taken out of an answer
into its message, and the tool messages that answer them (from the user, or from --tool-mocks)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from qwenchat.conversation.model import Conversation, Message
from qwenchat.tools.calls import ToolCall, load_definitions, load_mocks, result_text, split_calls, tool_names

MAX_MOCK_ROUNDS = 5  # a model that calls a mocked tool forever stops here and waits for the user


@dataclass
class ToolBox:
    definitions: list[dict[str, Any]] | None = None
    source: str | None = None  # the file the definitions came from
    mocks: dict[str, Any] = field(default_factory=dict)
    mocks_source: str | None = None

    def load(self, path: str) -> None:
        """Replace the definitions by a file's (ToolsError, nothing changed, when it has problems)."""
        self.definitions, self.source = load_definitions(path), path

    def load_mocks(self, path: str) -> None:
        self.mocks, self.mocks_source = load_mocks(path), path

    def off(self) -> None:
        self.definitions = self.source = None

    @property
    def names(self) -> list[str]:
        return tool_names(self.definitions)

    def mock_messages(self, pending: list[dict[str, Any]]) -> list[Message] | None:
        """Tool messages answering every pending call from the mocks; None unless all of them are mocked."""
        if not pending or not all(c["name"] in self.mocks for c in pending):
            return None
        return [result_message(c, result_text(self.mocks[c["name"]])) for c in pending]


def result_message(call: dict[str, Any], content: str) -> Message:
    return Message("tool", content, tool_call_id=call.get("id") or None, name=call.get("name") or None)


def take_calls(conversation: Conversation, box: ToolBox) -> list[ToolCall]:
    """With tools loaded, the last answer's valid call blocks become its `tool_calls` (ids unique in the
    conversation); every call found, valid or not, is returned for the panel."""
    msgs = conversation.messages
    if box.definitions is None or not msgs or msgs[-1].role != "assistant":
        return []
    last = msgs[-1]
    text, calls = split_calls(last.content, box.names)
    stored = [c for c in calls if c.name and c.arguments is not None]
    if stored:
        kept = list(last.tool_calls or [])  # a continued answer keeps the calls it had
        base = sum(len(m.tool_calls or []) for m in msgs)  # ids unique in the conversation
        for i, c in enumerate(stored):
            c.id = f"call_{base + i}"
        calls_out = kept + [c.to_message() for c in stored]
        msgs[-1] = dataclasses.replace(last, content=text, tool_calls=calls_out)  # its token data stays
    return calls
