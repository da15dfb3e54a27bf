"""What a UI sees of a chat session (`chat.ChatSession`): each answer as it streams, the end of a turn, and
notices. The session never prints; a UI implements `ChatObserver`, and `Headless` stands in without one."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from qwenchat.engines.api import TurnStats


@dataclass
class TurnResult:
    """What one turn produced. `kept` is False when nothing was answered: the history is as it was."""

    text: str  # the answer as the engine sent it (think tags included); for :continue, the new part only
    finish_reason: str  # stop, length, interrupted or error (see engines.api.FINISH_REASONS)
    stats: TurnStats | None = None
    error: str | None = None
    kept: bool = True
    probs: list | None = (
        None  # per-token records (qwenchat.probs.record.TokenProb) with `:probs on`, else None
    )
    tool_calls: list[Any] = field(default_factory=list)  # tools.ToolCall found in the answer (tools loaded)
    # With a JSON schema on (`:json`): (valid, one line saying so or giving the first error).
    json_check: tuple[bool, str] | None = None


class AnswerSink(Protocol):
    """Where a UI receives one streamed answer (the renderer's AnswerView is one)."""

    def feed(self, text: str) -> None: ...

    def end(self, finish_reason: str, stats: TurnStats | None = None, error: str | None = None) -> None: ...


class ChatObserver(Protocol):
    """What a UI sees of the session: each answer as it streams, the end of a turn, and notices."""

    def answer(self, *, think_open: bool | None, continues: str | None) -> AnswerSink:
        """A turn's first chunk came. `continues`: the answer being continued (`:continue`), else None."""
        ...

    def turn_done(self, result: TurnResult) -> None: ...

    def notice(self, text: str) -> None: ...


class _NullSink:
    def feed(self, text: str) -> None:
        pass

    def end(self, finish_reason: str, stats: TurnStats | None = None, error: str | None = None) -> None:
        pass


class Headless:
    """The observer of a session without a UI: shows nothing and keeps the notices for the caller."""

    def __init__(self) -> None:
        self.notices: list[str] = []

    def answer(self, *, think_open: bool | None, continues: str | None) -> AnswerSink:
        return _NullSink()

    def turn_done(self, result: TurnResult) -> None:
        pass

    def notice(self, text: str) -> None:
        self.notices.append(text)
