"""Progress reports from slow steps (downloads, conversion, loading): callers show them, nothing prints."""

from __future__ import annotations

from collections.abc import Callable

# A callback that shows one step ("loading tokenizer for …"), or None when nobody is watching.
Progress = Callable[[str], None] | None


def say(progress: Progress, message: str) -> None:
    """Report a loading step to whoever shows progress (the CLI's spinner), if anyone."""
    if progress is not None:
        progress(message)
