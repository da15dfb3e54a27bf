"""Drive the real program from outside, as a user does, for the tests of pipes, terminals and sessions:
`python -m qwenchat` in a pipe or a pseudo-terminal against the scripted OpenAI-compatible server, and a pyte
screen to read a terminal. Kept apart from the program's internals on purpose; the pseudo-terminal is
tests/support/pty_driver.py."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest

from tests.support import pty_driver
from tests.support.pty_driver import QWENCHAT
from tests.support.scripted_server import Scripted, delta, sse, start_stream


# -- the scripted server -------------------------------------------------------------------------
def usage_event(prompt: int, cached: int, completion: int) -> bytes:
    usage = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cached},
    }
    return sse({"object": "chat.completion.chunk", "choices": [], "usage": usage})


def answers(
    *texts: str,
    finish: str = "stop",
    pieces: int = 1,
    delay: float = 0.0,
    usage: tuple[int, int, int] | None = None,
) -> Callable[[BaseHTTPRequestHandler, dict[str, Any]], None]:
    """Each chat request gets the next text (the last one repeats), streamed in `pieces` line-aligned
    pieces (0: a line each) `delay` seconds apart, ending with `finish`."""
    count = {"n": 0}

    def script(h: BaseHTTPRequestHandler, body: dict[str, Any]) -> None:
        text = texts[min(count["n"], len(texts) - 1)]
        count["n"] += 1
        start_stream(h)
        lines = text.splitlines(keepends=True) or [text]
        step = max(1, -(-len(lines) // pieces)) if pieces else 1
        for i in range(0, len(lines), step):
            h.wfile.write(sse(delta("".join(lines[i : i + step]))))
            h.wfile.flush()
            if delay:
                time.sleep(delay)
        h.wfile.write(sse(delta(None, finish)))
        if usage is not None:
            h.wfile.write(usage_event(*usage))
        h.wfile.write(sse(b"[DONE]"))
        h.wfile.flush()

    return script


def echo(h: BaseHTTPRequestHandler, body: dict[str, Any]) -> None:
    """Answers "Noted: <the last user message>", so a saved answer shows which message it belongs to."""
    last = next((m["content"] for m in reversed(body["messages"]) if m["role"] == "user"), "")
    answers(f"Noted: {last}")(h, body)


def scripted_server() -> Iterator[Scripted]:
    """Body of a fixture: `server = pytest.fixture(scripted_server)`."""
    server = Scripted()
    server.script = answers("Hello there.")
    yield server
    server.close()


# -- pipe mode -----------------------------------------------------------------------------------
def run_pipe(
    stdin: str, *args: str, env: dict[str, str] | None = None, timeout: float = 90
) -> subprocess.CompletedProcess:
    """qwenchat with stdin and stdout as pipes; data and config dirs are the test's (conftest sets them)."""
    return subprocess.run(
        [*QWENCHAT, *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def session_files() -> list[Path]:
    return sorted((Path(os.environ["QWENCHAT_DATA_DIR"]) / "sessions").glob("*.json"))


def session_texts() -> dict[str, str]:
    """Every autosaved session: its file name -> the text of all its messages."""
    out = {}
    for path in session_files():
        data = json.loads(path.read_text(encoding="utf-8"))
        conv = data.get("conversation", data)
        msgs = conv.get("messages", []) if isinstance(conv, dict) else []
        out[path.name] = "\n".join(str(m.get("content", "")) for m in msgs)
    return out


def write_config(text: str) -> None:
    (Path(os.environ["QWENCHAT_CONFIG_DIR"]) / "config.toml").write_text(text, encoding="utf-8")


# -- a pseudo-terminal ---------------------------------------------------------------------------
class Pty(pty_driver.Pty):
    """qwenchat in a pseudo-terminal of `cols` x `rows` (tests/support/pty_driver.py), typed into one
    prompt at a time; `env` adds to this process's environment."""

    def __init__(
        self, *args: str, cols: int = 100, rows: int = 40, env: dict[str, str] | None = None
    ) -> None:
        # A pty answers no cursor position requests: tell prompt_toolkit not to ask (and warn about it).
        extra = {"TERM": "xterm-256color", "COLUMNS": "", "LINES": "", "PROMPT_TOOLKIT_NO_CPR": "1"}
        extra.update(env or {})
        # An explicit environment: the C-level one can hold COLUMNS/LINES that os.environ does not show.
        child_env = {k: v for k, v in {**os.environ, **extra}.items() if v}
        super().__init__(*args, env=child_env, cols=cols, rows=rows)


# -- a terminal emulator -------------------------------------------------------------------------
def typed(*args: str, lines: tuple[str, ...], **kw: Any) -> Pty:
    """Start qwenchat in a pty, type `lines` one prompt at a time, quit (exit status 0), return the pty."""
    t = Pty(*args, **kw)
    try:
        for line in lines:
            t.command(line)
        assert t.quit() == 0
    finally:
        t.kill()
    return t


def terminal(cols: int, rows: int) -> Any:
    """A pyte screen with scrollback that resizes as tmux, VTE, kitty or iTerm2 do: lines that wrapped are
    re-wrapped at the new width (reflow), and rows above the cursor go to the scrollback when the screen
    gets shorter (pyte alone neither reflows nor keeps them)."""
    pyte = pytest.importorskip("pyte", reason="the terminal tests need pyte (the test extra)")
    from pyte.screens import StaticDefaultDict

    class Terminal(pyte.HistoryScreen):
        _drawing = False

        def draw(self, data: str) -> None:
            self._drawing = True  # a line feed now is an automatic wrap
            try:
                super().draw(data)
            finally:
                self._drawing = False

        def linefeed(self) -> None:
            super().linefeed()
            self.buffer[self.cursor.y].soft = self._drawing  # continues the row above

        def erase_in_display(self, how: int = 0, *args: Any, **kwargs: Any) -> None:
            super().erase_in_display(how, *args, **kwargs)
            for y in range(self.cursor.y + 1 if how == 0 else 0, self.lines):
                self.buffer[y].soft = False

        def _blank(self, char: Any) -> bool:
            return char.data in (" ", "") and char.bg == "default" and not char.reverse

        def _reflow(self, columns: int) -> None:
            rows = [*self.history.top, *(self.buffer[y] for y in range(self.lines))]
            at = len(self.history.top) + self.cursor.y
            lines: list[list[Any]] = []
            cursor = (0, 0)
            for i, row in enumerate(rows):
                cells = [row[x] for x in range(self.columns)]
                if getattr(row, "soft", False) and lines:
                    lines[-1].extend(cells)
                else:
                    lines.append(cells)
                if i == at:
                    cursor = (len(lines) - 1, len(lines[-1]) - self.columns + self.cursor.x)
            new_rows: list[Any] = []
            line_at, offset = cursor
            for n, cells in enumerate(lines):
                keep = offset if n == line_at else 0
                while len(cells) > keep and self._blank(cells[-1]):
                    cells.pop()
                if n == line_at:
                    cursor = (len(new_rows) + offset // columns, offset % columns)
                for start in range(0, max(len(cells), 1), columns):
                    row = StaticDefaultDict(self.default_char)
                    row.update(enumerate(cells[start : start + columns]))
                    row.soft = start > 0
                    new_rows.append(row)
            while len(new_rows) > cursor[0] + 1 and not new_rows[-1]:
                new_rows.pop()  # blank rows below the cursor
            top = max(0, len(new_rows) - self.lines)
            self.history.top.clear()
            self.history.top.extend(new_rows[:top])
            self.buffer.clear()
            for y, row in enumerate(new_rows[top:]):
                self.buffer[y] = row
            self.cursor.y, self.cursor.x = cursor[0] - top, cursor[1]
            self.columns = columns

        def resize(self, lines: int | None = None, columns: int | None = None) -> None:
            lines, columns = lines or self.lines, columns or self.columns
            if columns != self.columns:
                self._reflow(columns)
            excess = max(0, self.cursor.y + 1 - lines)
            if excess:
                rows = [self.buffer[y] for y in range(self.lines)]
                self.history.top.extend(rows[:excess])
                self.buffer.clear()
                for y, row in enumerate(rows[excess:]):
                    self.buffer[y] = row
                self.cursor.y -= excess
            self.lines = max(lines, self.cursor.y + 1)  # keeps pyte from dropping rows at the top
            super().resize(lines, columns)

    return Terminal(cols, rows, history=100_000, ratio=1)


def screen_lines(
    data: bytes, cols: int, rows: int, resizes: Sequence[tuple[int, int, int]] = ()
) -> list[str]:
    """Scrollback then screen of a terminal fed `data`, resized to (cols, rows) at each byte offset of
    `resizes` [(offset, cols, rows)]; trailing blanks and trailing empty lines dropped."""
    import pyte

    screen = terminal(cols, rows)
    stream = pyte.ByteStream(screen)
    at = 0
    for offset, c, r in sorted(resizes):
        stream.feed(data[at:offset])
        screen.resize(r, c)
        at = offset
    stream.feed(data[at:])
    lines = ["".join(row[x].data for x in range(screen.columns)) for row in screen.history.top]
    lines += screen.display
    lines = [line.rstrip() for line in lines]
    while lines and not lines[-1]:
        lines.pop()
    return lines
