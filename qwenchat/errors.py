"""The one base class for errors a user sees as one line, and the one way to turn an exception into it."""

from __future__ import annotations


class UserError(Exception):
    """Bad input or a failure worth one line to the user; whatever raised it changed nothing."""


def first_line(exc: BaseException, limit: int = 300) -> str:
    """An exception as one line: its message's first line, or its type's name when it has none."""
    first = (str(exc).strip().splitlines() or [""])[0].strip()
    return first[:limit] if first else type(exc).__name__


class ChatError(UserError):
    """The session refused a change (nothing to undo, a context overflow, ...); the history is unchanged."""
