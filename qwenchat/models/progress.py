"""Progress reports from slow steps (downloads, conversion, loading): callers show them, nothing prints."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

# A callback that shows one step ("loading tokenizer for …"), or None when nobody is watching.
Progress = Callable[[str], None] | None


def say(progress: Progress, message: str) -> None:
    """Report a loading step to whoever shows progress (the CLI's spinner), if anyone."""
    if progress is not None:
        progress(message)


def bar(done: int, total: int, width: int = 16) -> str:
    """A text progress bar for a status line: `██████░░░░░░░░░░ 120/291`."""
    filled = min(width, width * done // total) if total > 0 else 0
    return "█" * filled + "░" * (width - filled) + f" {done}/{total}"


class Steps:
    """A stand-in for `tqdm` in a library's loop: reports `label` and a bar through `progress` (one status
    line updated in place) instead of writing bars to stderr, which stack up under a spinner."""

    def __init__(
        self,
        progress: Progress,
        label: str,
        iterable: Iterable[Any] | None = None,
        total: int | None = None,
        **_: Any,
    ) -> None:
        self.progress, self.label, self.iterable = progress, label, iterable
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)  # type: ignore[arg-type]
        self.total = total or 0
        self.n = 0
        self._shown = -1
        self._report()

    def _report(self) -> None:
        # Only when the bar moves: a status update per item of a long loop costs more than the item.
        step = self.n * 100 // self.total if self.total else self.n
        if step != self._shown:
            self._shown = step
            say(self.progress, f"{self.label} {bar(self.n, self.total)}" if self.total else self.label)

    def __iter__(self) -> Iterator[Any]:
        for item in self.iterable or ():
            yield item
            self.update(1)

    def update(self, n: int = 1) -> None:
        self.n += n
        self._report()

    def __enter__(self) -> Steps:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        pass

    def set_description(self, *args: Any, **kwargs: Any) -> None:
        pass

    def set_postfix(self, *args: Any, **kwargs: Any) -> None:
        pass
