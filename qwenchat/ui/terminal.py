"""The terminal itself: the console factory, the transient live region and the segments-to-ANSI cache.

Nothing here knows about answers or markdown; `answer.py` draws into a `LiveRegion`, `render.py` owns the
console.
"""

from __future__ import annotations

import os
import sys
from typing import IO

from rich.color import ColorSystem
from rich.console import Console
from rich.segment import Segment

STYLE_HEADER = "bold cyan"
STYLE_NOTICE = "yellow"
STYLE_ERROR = "bold red"
STYLE_HINT = "dim"
STYLE_THINK = "dim"


def make_console(
    file: IO[str] | None = None,
    *,
    plain: bool | None = None,
    width: int | None = None,
    height: int | None = None,
    record: bool = False,
) -> Console:
    """A console that emits no escape codes when plain (pipe, NO_COLOR, --no-color).

    `record=True` keeps what goes into scrollback for `Renderer.export_svg()`.
    """
    file = file or sys.stdout
    if plain is None:
        plain = not (hasattr(file, "isatty") and file.isatty()) or "NO_COLOR" in os.environ
    if plain:
        return Console(
            file=file,
            force_terminal=False,
            no_color=True,
            color_system=None,
            highlight=False,
            emoji=False,
            width=width or 10_000,
            height=height,
            soft_wrap=True,
            record=record,
        )
    return Console(file=file, highlight=False, emoji=False, width=width, height=height, record=record)


_COLOR_SYSTEMS = {
    "standard": ColorSystem.STANDARD,
    "256": ColorSystem.EIGHT_BIT,
    "truecolor": ColorSystem.TRUECOLOR,
    "windows": ColorSystem.WINDOWS,
}


class LiveRegion:
    """A transient region at the bottom of the terminal, redrawn in place.

    What rich's `Live(transient=True, auto_refresh=False)` does, minus its cost: rich re-renders and rewrites
    the whole region on every refresh, this rewrites from the first line that changed (usually only the last
    one), so a redraw writes a few hundred bytes. The region is cleared before anything goes to scrollback and
    on `clear()`, which leaves the cursor where the region began. Never taller than the caller makes it: lines
    that scrolled off the screen could not be erased.
    """

    def __init__(self, console: Console) -> None:
        self.console = console
        self.lines: list[str] = []  # what is on screen now, with escape codes; the cursor ends the last one
        self._width = 0
        self._cursor_hidden = False

    def _write(self, data: str, lines: list[str]) -> None:
        try:
            if data:
                self.console.file.write(data)
                self.console.file.flush()
        finally:  # a Ctrl-C lands between bytecodes, so the bookkeeping stays true to the screen
            self.lines = lines

    def _home(self) -> str:
        """Back to the start of the region's first line."""
        n = len(self.lines)
        return "\r" + (f"\x1b[{n - 1}A" if n > 1 else "")

    def update(self, lines: list[str], width: int) -> None:
        old = self.lines
        if not self._cursor_hidden:
            self.console.show_cursor(False)
            self._cursor_hidden = True
        first = 0
        if width == self._width:  # after a resize the old lines may have re-wrapped: redraw all
            while first < len(old) and first < len(lines) and old[first] == lines[first]:
                first += 1
        self._width = width
        if first == len(old) == len(lines):
            return
        if not lines:
            self.clear()
            return
        if first == len(lines):  # shorter: the cursor has to end on the new last line, so rewrite that one
            first -= 1
        if not old:
            data = "\n".join(lines)
        elif first == len(old):
            data = "\n" + "\n".join(lines[first:])
        else:
            up = len(old) - 1 - first
            data = "\r" + (f"\x1b[{up}A" if up else "") + "\x1b[J" + "\n".join(lines[first:])
        self._write(data, list(lines))

    def clear(self) -> None:
        """Erase the region; the cursor is left at the start of its first line."""
        if self.lines:
            self._write(self._home() + "\x1b[J", [])

    def close(self) -> None:
        self.clear()
        if self._cursor_hidden:
            self._cursor_hidden = False
            self.console.show_cursor(True)


def _has_background(seg: Segment) -> bool:
    return bool(seg.style and seg.style.bgcolor)


_ANSI_CACHE: dict[int, tuple[list[Segment], ColorSystem | None, str]] = {}


def ansi_lines(console: Console, lines: list[list[Segment]]) -> list[str]:
    """Segments to terminal text, trailing unstyled blanks dropped (they wrap when the window narrows).
    Lines that come back as the same objects (cached code lines, finished list items) are converted once."""
    system = _COLOR_SYSTEMS.get(console.color_system or "")
    out = []
    for line in lines:
        hit = _ANSI_CACHE.get(id(line))
        if hit is not None and hit[0] is line and hit[1] == system:
            out.append(hit[2])
            continue
        end = len(line)
        while end and not line[end - 1].text.strip() and not _has_background(line[end - 1]):
            end -= 1
        parts = []
        for i, seg in enumerate(line[:end]):
            text, style, control = seg
            if control:
                continue
            if i == end - 1 and not _has_background(seg):
                text = text.rstrip()
            parts.append(style.render(text, color_system=system) if style and system else text)
        out.append("".join(parts))
        if len(_ANSI_CACHE) > 8192:
            _ANSI_CACHE.clear()
        _ANSI_CACHE[id(line)] = (line, system, out[-1])
    return out
