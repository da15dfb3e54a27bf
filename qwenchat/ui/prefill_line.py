"""`prefill 3,072/6,844 tokens · 81 tok/s · 36 s left`: one line updated in place while a long prompt is
prefilled, erased once the answer starts. On the terminal, or on stderr when stdout is a pipe."""

from __future__ import annotations

from collections.abc import Callable
from typing import TextIO

SHOW_AFTER_S = 1.0  # a prefill expected to take less than this shows nothing


def prefill_text(done: int, total: int, seconds: float) -> str:
    """The progress line for `done` of `total` tokens computed in `seconds`."""
    text = f"prefill {done:,}/{total:,} tokens"
    if seconds > 0 and done > 0:
        rate = done / seconds
        text += f" · {rate:,.0f} tok/s · {max(total - done, 0) / rate:,.0f} s left"
    return text


class PrefillLine:
    """Shown only for prompts long enough to matter; `clear()` takes it off the screen again."""

    def __init__(self, file: TextIO | None, clock: Callable[[], float]) -> None:
        self.file = file  # None: nowhere to draw in place (not a terminal)
        self.clock = clock
        self.t0 = clock()  # the turn's start: the rate counts the whole wait
        self.shown = False

    def update(self, done: int, total: int) -> None:
        if self.file is None:
            return
        elapsed = self.clock() - self.t0
        expected = elapsed * total / done if done else elapsed
        if not self.shown and expected < SHOW_AFTER_S:
            return
        if done >= total:
            self.clear()
            return
        self.file.write("\r" + prefill_text(done, total, elapsed) + "\x1b[K")
        self.file.flush()
        self.shown = True

    def clear(self) -> None:
        if self.shown and self.file is not None:
            self.file.write("\r\x1b[2K")
            self.file.flush()
        self.shown = False
