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
    """A console for `file`: no escape codes at all when it is not a terminal (a pipe, a file).

    `plain=True` (--no-color) or `NO_COLOR` in a terminal: no colours and no styles, but the layout stays
    (markdown structure, code blocks, the live region and spinners move the cursor). `record=True` keeps
    what goes into scrollback for `Renderer.export_svg()`.
    """
    file = file or sys.stdout
    tty = hasattr(file, "isatty") and file.isatty()
    if not tty:
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
    colourless = bool(plain) or bool(os.environ.get("NO_COLOR"))
    return Console(
        file=file,
        highlight=False,
        emoji=False,
        width=width,
        height=height,
        record=record,
        **({"color_system": None, "no_color": True} if colourless else {}),
    )


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

    Between redraws the (hidden) cursor rests at the start of the region's first line, not after its last:
    a terminal keeps the cursor's cell when a resize re-wraps the lines (tmux, VTE, kitty, iTerm2) and, when
    the window gets shorter, drops the rows below the cursor before it pushes rows above it into scrollback.
    So after any resize the region is exactly what lies below the cursor: `ESC[J` erases it, whatever the
    old lines became at the new width, and nothing of it is left in scrollback.
    """

    def __init__(self, console: Console) -> None:
        self.console = console
        self.lines: list[str] = []  # on screen now, with escape codes; the cursor starts the first one
        self._size: tuple[int, int] = (0, 0)  # the terminal size they were drawn for
        self._cursor_hidden = False

    def _write(self, data: str, lines: list[str]) -> None:
        try:
            if data:
                self.console.file.write(data)
                self.console.file.flush()
        finally:  # a Ctrl-C lands between bytecodes, so the bookkeeping stays true to the screen
            self.lines = lines

    def update(self, lines: list[str], width: int, height: int | None = None) -> None:
        """Show `lines`, rendered for a terminal of `width` x `height` (each line at most `width` cells: one
        row), rewriting from the first change; everything after the terminal changed size."""
        size = (width, height if height is not None else self.console.height)
        if tuple(self.console.size) != size:
            # Resized while the lines were being rendered: they are wrong already, the next update is right.
            self._size = (0, 0)
            return
        old = self.lines
        if not self._cursor_hidden:
            self.console.show_cursor(False)
            self._cursor_hidden = True
        first = 0
        if size == self._size:  # after a resize rows may have re-wrapped or been dropped: redraw all
            while first < len(old) and first < len(lines) and old[first] == lines[first]:
                first += 1
        self._size = size
        if first == len(old) == len(lines):
            return
        if not lines:
            self.clear()
            return
        if first < len(old) or not old:  # erase from the first changed row down
            data = _down(first) + "\r\x1b[J"
        else:  # only new lines: after the last old one, which stays
            data = _down(len(old) - 1) + "\r\n\x1b[J"
        data += "\n".join(lines[first:])
        last = max(first, len(lines) - 1)  # the row the cursor ends on
        self._write(data + "\r" + _up(last), list(lines))

    def clear(self) -> None:
        """Erase the region; the cursor is left at the start of its first line."""
        if self.lines:
            self._write("\r\x1b[J", [])

    def close(self) -> None:
        self.clear()
        if self._cursor_hidden:
            self._cursor_hidden = False
            self.console.show_cursor(True)


def _down(n: int) -> str:
    return f"\x1b[{n}B" if n > 0 else ""


def _up(n: int) -> str:
    return f"\x1b[{n}A" if n > 0 else ""


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


def restore_terminal(stream: IO[str]) -> None:
    """Whatever ended the program, the terminal gets its cursor back and bracketed paste off."""
    try:
        stream.write("\x1b[?25h\x1b[?2004l")
        stream.flush()
    except (OSError, ValueError):  # a closed or broken stream: nothing left to restore
        pass
