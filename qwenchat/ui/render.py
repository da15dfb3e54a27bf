"""Everything that reaches the terminal goes through here; nothing else prints.

Streaming an answer (`Renderer.answer()` -> `AnswerView`):

* Terminal with markdown on: finished markdown blocks are printed once into scrollback with rich's
  `Markdown` (`markdown_stream.BlockStream` finds them, so scrollback ends up exactly as a one-shot render
  of the whole answer); only the unfinished tail is kept in a transient live region (`LiveRegion`, rich
  `Live(transient=True)` without its cost), never taller than the terminal less two lines, redrawn from
  `feed()` at most every `refresh_interval` (12.5 Hz; rarer when a redraw is expensive) and once at `end()`.
  The work per token does not grow with the length of the answer.
* `markdown=False`, or a plain console (a pipe, NO_COLOR): the text is written as it arrives, no live
  region. A plain console gets no escape codes at all.
* `<think>…</think>` (see `think.py`): dimmed plain text while it streams. think="fold" replaces it by one
  line ("▸ thought for 212 tokens, 9.8 s"; tokens = stream chunks that carried thinking, which the engine
  sends one per token; seconds from the block's opening to its close), think="show" keeps the dimmed text in
  scrollback and adds the same line, think="hide" shows only a spinner while thinking and nothing after
  (unless it never closed). On a plain console think="show" writes the block raw with its tags and
  fold/hide drop it, so pipes get the answer alone.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from rich.color import ColorSystem
from rich.console import Console, ConsoleOptions
from rich.control import Control
from rich.markup import escape
from rich.segment import ControlType, Segment
from rich.table import Table
from rich.text import Text

from qwenchat.engines.api import TurnStats
from qwenchat.think import OPEN as THINK_OPEN
from qwenchat.think import ThinkEvent, ThinkSplitter
from qwenchat.ui.markdown_stream import (
    AnswerMarkdown,
    BlockStream,
    PreviewMarkdown,
    blank_line_flags,
    code_lines,
    last_lines,
    split_preview,
    text_lines,
)

THINK_MODES = ("show", "fold", "hide")
CODE_THEME = "monokai"
REFRESH_INTERVAL = 0.08  # s between redraws of the live tail (12.5 Hz)
# Without being told whether the output starts inside a think block, this much text is held back from
# scrollback (it stays visible in the live region) so that a `</think>` among it can still fold it.
UNDECIDED_HOLD_CHARS = 2000
DRAW_SHARE = 25  # a redraw that took t seconds waits at least 25 t before the next (<= 4% of the time)
_SPINNER = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"

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


def _think_summary(tokens: int, seconds: float, note: str = "") -> str:
    unit = "token" if tokens == 1 else "tokens"
    text = f"▸ thought for {tokens} {unit}, {seconds:.1f} s"
    return f"{text} ({note})" if note else text


_UNFINISHED = {"interrupted": "interrupted", "length": "stopped at max_new_tokens", "error": "error"}


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


def _ansi(console: Console, lines: list[list[Segment]]) -> list[str]:
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


class AnswerView:
    """One streamed answer: feed text as it arrives, then end it once."""

    def __init__(self, renderer: Renderer, model_name: str, think_open: bool | None = None) -> None:
        self.r = renderer
        self.model_name = model_name
        self.think_mode = renderer.think if renderer.think in THINK_MODES else "fold"
        self.styled = not renderer.plain  # escape codes allowed
        self.live_markdown = renderer.markdown and self.styled
        self._clock = renderer.clock
        self._interval = renderer.refresh_interval
        self._chunks: list[str] = []
        self._text: str | None = ""
        self._splitter = ThinkSplitter(think_open, UNDECIDED_HOLD_CHARS if self.live_markdown else 0)
        self._blocks = BlockStream()
        self._new_line = False  # rich's Markdown `new_line` flag after the blocks printed so far
        # think block
        self._thinking = False
        self._think_pending: list[str] = []  # thought not yet in scrollback (show) or the recent part (fold)
        self._think_pending_len = 0
        self._think_lead = True  # strip the newlines that open a think block
        self._think_tokens = 0
        self._think_last_feed = -1
        self._think_t0 = 0.0
        # raw streaming
        self._raw_at_line_start = True
        self._placeholder = False  # a "thinking…" line without newline is on screen (raw terminal mode)
        # live
        self._region = LiveRegion(renderer.console) if self.live_markdown else None
        self._preview_key: tuple[str, int] | None = None  # the finished items of a list being previewed
        self._preview_lines: list[list[Segment]] = []
        self._next_refresh = -math.inf
        self._feeds = 0
        self._t_first: float | None = None
        self._ended = False

    # -- public ---------------------------------------------------------------------------
    @property
    def text(self) -> str:
        """The full raw text received, think tags included."""
        if self._text is None:
            self._text = "".join(self._chunks)
            self._chunks = [self._text]
        return self._text

    def start(self) -> None:
        if self.styled:
            self.r._print(Text("● " + self.model_name, style=STYLE_HEADER))

    def feed(self, text: str) -> None:
        if not text or self._ended:
            return
        self._chunks.append(text)
        self._text = None
        now = self._clock()
        if self._t_first is None:
            self._t_first = now
        self._feeds += 1
        for ev in self._splitter.feed(text):
            self._event(ev, now)
        if self.live_markdown and now >= self._next_refresh:
            t0 = time.perf_counter()
            self._refresh(now)
            # Redraw at most every `refresh_interval`, and rarer when a redraw is costly (a big table):
            # redrawing takes at most 1/DRAW_SHARE of the time. An interval of 0 redraws at every feed.
            cost = time.perf_counter() - t0
            self._next_refresh = now + max(self._interval, DRAW_SHARE * cost) if self._interval > 0 else now

    def end(self, finish_reason: str, stats: TurnStats | None = None, error: str | None = None) -> None:
        if self._ended:
            return
        self._ended = True
        try:
            now = self._clock()
            for ev in self._splitter.finish():
                self._event(ev, now)
            if self._thinking:
                self._close_think(now, _UNFINISHED.get(finish_reason, "unfinished"))
            if self.live_markdown:
                self._stop_live()
                rest = self._blocks.flush()
                if rest.strip():
                    self._print_block(rest)
            elif not self._raw_at_line_start:
                self._raw_write("\n")
        finally:
            self._stop_live()
            self.r.console.file.flush()
        if not self._chunks and finish_reason == "stop" and self.styled:
            self.r.hint("(empty answer)")
        if finish_reason == "interrupted":
            self.r.notice("interrupted: the partial answer is kept in the history")
        elif finish_reason == "length":
            self.r.notice(
                "stopped at max_new_tokens (`:continue` goes on, `:conf max_new_tokens=N` raises it)"
            )
        elif finish_reason == "error" and error:
            self.r.error(error)

    def __enter__(self) -> AnswerView:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            self.end("stop")
        else:
            self.end(
                "interrupted" if issubclass(exc_type, KeyboardInterrupt) else "error",
                error=str(exc) if exc else None,
            )

    # -- events -----------------------------------------------------------------------------
    def _event(self, ev: ThinkEvent, now: float) -> None:
        kind = ev.kind
        if kind == "answer":
            if self.live_markdown:
                self._blocks.append(ev.text)
            else:
                self._raw_write(ev.text)
        elif kind == "think":
            self._think_text(ev.text)
        elif kind == "open":
            self._thinking = True
            self._think_lead = True
            if ev.implicit:  # the output started inside the block: count from the first chunk
                self._think_t0 = self._t_first if self._t_first is not None else now
                self._think_tokens = max(0, self._feeds - 1)
            else:
                self._think_t0 = now
            self._think_last_feed = self._feeds - 1 if ev.implicit else self._feeds
            if not self.live_markdown:
                self._raw_think_open()
        elif kind == "close":
            self._close_think(now)
        elif kind == "retro":  # no tag opened it, but what was shown as the answer so far was thinking
            self._think_tokens = self._feeds
            self._think_t0 = self._t_first if self._t_first is not None else now
            seconds = now - self._think_t0
            summary = _think_summary(self._think_tokens, seconds, "the text above; no <think> tag")
            if self.live_markdown:
                rest = self._blocks.flush()
                if rest.strip():
                    self._print_block(rest)
                self._scroll(Text(summary, style=STYLE_THINK))
                self._new_line = False
            elif self.styled:
                self._raw_write("\n" if not self._raw_at_line_start else "")
                self._raw_write(summary + "\n", STYLE_THINK)
            else:  # a pipe got the thought as it came: close it the way the model did
                self._raw_write(("\n" if not self._raw_at_line_start else "") + "</think>\n")

    def _think_text(self, text: str) -> None:
        if self._feeds != self._think_last_feed:
            self._think_tokens += 1
            self._think_last_feed = self._feeds
        if self._think_lead:
            text = text.lstrip("\r\n")
            if not text:
                return
            self._think_lead = False
        if self.live_markdown:
            if self.think_mode == "hide":
                return
            self._think_pending.append(text)
            self._think_pending_len += len(text)
            if self.think_mode == "fold" and self._think_pending_len > 64_000:  # the preview needs the end
                keep = "".join(self._think_pending)[-16_000:]
                self._think_pending, self._think_pending_len = [keep], len(keep)
        elif self.think_mode == "show":
            self._raw_write(text, STYLE_THINK if self.styled else None)

    def _close_think(self, now: float, note: str = "") -> None:
        self._thinking = False
        seconds = now - self._think_t0
        summary = _think_summary(self._think_tokens, seconds, note)
        if self.live_markdown:
            if self.think_mode == "show":
                self._commit_think(final=True)
            self._think_pending, self._think_pending_len = [], 0
            if self.think_mode != "hide" or note:
                self._scroll(Text(summary, style=STYLE_THINK))
            return
        if not self.styled:
            if self.think_mode == "show":
                self._raw_write(("\n" if not self._raw_at_line_start else "") + "</think>\n")
            return
        if self._placeholder:
            self._placeholder = False
            self._erase_line()
            self._raw_at_line_start = True
        elif not self._raw_at_line_start:
            self._raw_write("\n")
        if self.think_mode != "hide" or note:
            self._raw_write(summary + "\n", STYLE_THINK)

    def _raw_think_open(self) -> None:
        if not self.styled:
            if self.think_mode == "show":
                self._raw_write("<think>\n")
            return
        if self.think_mode in ("fold", "hide"):
            self._raw_write("▸ thinking…", STYLE_THINK)
            self._placeholder = True

    # -- terminal + markdown --------------------------------------------------------------
    def _refresh(self, now: float) -> None:
        if self._thinking and self.think_mode == "show":
            self._commit_think(final=False)
        done = self._blocks.take()
        if done:
            self._print_block(done)
        self._draw()

    def _draw(self) -> None:
        if self._region is None or self.r.console.is_dumb_terminal:
            return
        console = self.r.console
        rows = max(1, console.height - 2)
        width = max(1, console.width)
        options = console.options.update(width=width, height=None)
        lines = self._live_lines(console, options, rows)[-rows:]
        self._region.update(_ansi(console, lines), width)

    def _scroll(self, *objects: Any, **kwargs: Any) -> None:
        """Print into scrollback, above the live region."""
        if self._region is not None:
            self._region.clear()
        self.r._print(*objects, **kwargs)

    def _stop_live(self) -> None:
        if self._region is None:
            return
        try:
            self._region.close()
        except Exception:  # give the cursor back whatever happened
            self.r.console.show_cursor(True)

    def _print_block(self, src: str) -> None:
        """Print finished blocks with the blank line a one-shot render of the whole answer has before them."""
        md = AnswerMarkdown(src, code_theme=CODE_THEME)
        has_blank, _ = blank_line_flags(md, False)
        wants_blank, self._new_line = blank_line_flags(md, self._new_line)
        if wants_blank and not has_blank:
            self._scroll(Text(""))
        self._scroll(md)

    def _commit_think(self, final: bool) -> None:
        """think='show': complete lines of thought go to scrollback, dimmed."""
        pending = "".join(self._think_pending)
        cut = len(pending) if final else pending.rfind("\n")
        if cut < 0:
            self._think_pending, self._think_pending_len = [pending], len(pending)
            return
        done, rest = pending[:cut], pending[cut + 1 :] if not final else ""
        if final:
            done = done.rstrip()
        self._think_pending, self._think_pending_len = ([rest], len(rest)) if rest else ([], 0)
        if done or not final:
            self._scroll(Text(done, style=STYLE_THINK))

    def _live_lines(self, console: Console, options: ConsoleOptions, rows: int) -> list[list[Segment]]:
        """The live region: at most `rows` screen lines showing the end of what is not in scrollback yet."""
        width = options.max_width
        budget = rows * width
        if self._thinking:
            secs = self._clock() - self._think_t0
            status = f"thinking… {self._think_tokens} tokens, {secs:.0f} s"
            if self.think_mode == "hide":
                frame = _SPINNER[int(secs * 10) % len(_SPINNER)]
                return console.render_lines(Text(f"{frame} {status}", style=STYLE_THINK), options, pad=False)
            recent = _tail_of(self._think_pending, budget)
            if self.think_mode == "show":
                return text_lines(console, options, recent, STYLE_THINK, rows) if recent else []
            head = console.render_lines(Text("▸ " + status, style="dim italic"), options, pad=False)
            return head + (text_lines(console, options, recent, STYLE_THINK, rows - 1) if recent else [])
        fence = self._blocks.fence
        if fence is not None and not self._splitter.undecided:  # inside a code block: no markdown needed
            code = last_lines(self._blocks.tail[fence.content_start :], rows, budget)
            return code_lines(console, options, code.rstrip(), fence.lexer, CODE_THEME)
        if self._splitter.undecided:
            held = self._splitter.held.lstrip()
            if THINK_OPEN.startswith(held):  # may still become `<think>`: show nothing yet
                return []
            src = last_lines(held, rows, budget)
        else:
            src = self._blocks.preview_source(rows, budget)
        if not src.strip():
            return []
        cut = split_preview(src)
        if not cut.done:
            return self._markdown_lines(console, options, src)
        key = (cut.done, options.max_width)
        if self._preview_key != key:
            self._preview_key, self._preview_lines = key, self._markdown_lines(console, options, cut.done)
        if cut.code is not None:
            pad = Segment(" " * cut.indent)
            narrow = options.update(width=max(1, width - cut.indent))
            body = last_lines(cut.code.rstrip(), rows, budget)
            code = code_lines(console, narrow, body, cut.lexer, CODE_THEME)
            return self._preview_lines + [[pad, *line] for line in code]
        lines = self._markdown_lines(console, options, cut.live)
        if lines and not lines[0]:
            lines = lines[1:]  # rich opens every list with a blank line
        return self._preview_lines + lines

    @staticmethod
    def _markdown_lines(console: Console, options: ConsoleOptions, src: str) -> list[list[Segment]]:
        return console.render_lines(PreviewMarkdown(src, code_theme=CODE_THEME), options, pad=False)

    # -- raw ------------------------------------------------------------------------------
    def _erase_line(self) -> None:
        self.r.console.control(Control((ControlType.CARRIAGE_RETURN,), (ControlType.ERASE_IN_LINE, 2)))

    def _raw_write(self, text: str, style: str | None = None) -> None:
        if not text:
            return
        if self._placeholder:  # the answer goes on the line of the "thinking…" placeholder otherwise
            self._placeholder = False
            self._erase_line()
        if style and self.styled:
            self.r._print(Text(text, style=style), end="", soft_wrap=True)
        else:
            self.r.console.file.write(text)
            self.r.console.file.flush()
            if self.r._recorder is not None:
                self.r._recorder.print(Text(text), end="", soft_wrap=True)
        self._raw_at_line_start = text.endswith("\n")


def _tail_of(chunks: list[str], n: int) -> str:
    """The last `n` characters of the concatenation of `chunks`, without joining all of them."""
    out: list[str] = []
    size = 0
    for c in reversed(chunks):
        out.append(c)
        size += len(c)
        if size >= n:
            break
    text = "".join(reversed(out))
    return text[-n:] if len(text) > n else text


class Renderer:
    """The only object that writes to the terminal."""

    def __init__(
        self,
        console: Console | None = None,
        *,
        markdown: bool = True,
        think: str = "fold",
        refresh_interval: float = REFRESH_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.console = console or make_console()
        self.markdown = markdown
        self.think = think
        self.refresh_interval = refresh_interval
        self.clock = clock
        # A copy of what went into scrollback for export_svg(): also the raw text written past rich, never
        # the live region's redraws.
        self._recorder: Console | None = None
        if self.console.record:
            self._recorder = Console(
                file=io.StringIO(),
                record=True,
                force_terminal=not self.plain,
                color_system="truecolor" if not self.plain else None,
                no_color=self.plain,
                width=self.console.width,
                highlight=False,
                emoji=False,
            )

    @property
    def plain(self) -> bool:
        return self.console.no_color or not self.console.is_terminal

    def _print(self, *objects: Any, **kwargs: Any) -> None:
        self.console.print(*objects, **kwargs)
        if self._recorder is not None:
            self._recorder.width = self.console.width
            self._recorder.print(*objects, **kwargs)

    # -- one-liners -----------------------------------------------------------------------
    def info(self, text: str) -> None:
        self._print(escape(text))

    def notice(self, text: str) -> None:
        self._print(Text(text, style=STYLE_NOTICE if not self.plain else ""))

    def error(self, text: str) -> None:
        self._print(Text("error: " + text, style=STYLE_ERROR if not self.plain else ""))

    def hint(self, text: str) -> None:
        self._print(Text(text, style=STYLE_HINT if not self.plain else ""))

    def text(self, text: str) -> None:
        """Verbatim text (a rendered prompt, an exported file): no markup interpretation."""
        self._print(Text(text), soft_wrap=True)

    # -- structured ------------------------------------------------------------------------
    def banner(self, *, model: str, device: str, dtype: str, extra: Sequence[str] = ()) -> None:
        if self.plain:
            self._print(f"qwenchat · {model} · {device} · {dtype}", markup=False)
        else:
            line = Text.assemble(
                ("qwenchat", "bold cyan"), "  ", (model, "bold"), (f" · {device} · {dtype}", "dim")
            )
            self._print(line)
        for item in extra:
            self.hint(item)
        self.hint("Type :h for help, :q or Ctrl-D to quit, Ctrl-C to stop an answer.")

    def table(
        self, rows: Iterable[Sequence[str]], headers: Sequence[str] = (), title: str | None = None
    ) -> None:
        if self.plain:
            if title:
                self._print(title, markup=False)
            for row in rows:
                self._print("  ".join(row), markup=False)
            return
        table = Table(title=title, show_header=bool(headers), box=None, padding=(0, 2, 0, 0))
        for h in headers or [""] * 2:
            table.add_column(h, overflow="fold")
        for row in rows:
            table.add_row(*[escape(c) for c in row])
        self._print(table)

    def history(self, messages: Sequence[Any], system: str | None) -> None:
        if system:
            self._history_entry("system", system, False)
        if not messages:
            self.hint("(no history)")
        for m in messages:
            self._history_entry(m.role, m.content, m.interrupted)

    def _history_entry(self, role: str, content: str, interrupted: bool) -> None:
        mark = " (interrupted)" if interrupted else ""
        if self.plain:
            self._print(f"[{role}]{mark}", markup=False)
        else:
            self._print(Text(f"{role}{mark}", style="bold magenta" if role == "user" else STYLE_HEADER))
        self.text(content)

    def stats(self, s: TurnStats) -> None:
        parts = [
            f"prompt {s.prompt_tokens} tok (reused {s.reused_tokens}, prefilled {s.prefilled_tokens})",
            f"TTFT {s.ttft_s:.2f}s",
            f"prefill {s.prefill_tps:.0f} tok/s",
            f"decode {s.decode_tps:.1f} tok/s",
            f"{s.generated_tokens} tok",
            s.finish_reason,
        ]
        if s.peak_gpu_mem_bytes is not None:
            parts.append(f"peak GPU {s.peak_gpu_mem_bytes / 2**30:.2f} GiB")
        self.hint(" · ".join(parts))

    def clear_screen(self) -> None:
        self.console.clear()

    def raw(self, data: str) -> None:
        """Bytes for the terminal itself (an OSC 52 clipboard sequence); nothing when output is a pipe."""
        if self.console.is_terminal:
            self.console.file.write(data)
            self.console.file.flush()

    @contextlib.contextmanager
    def status(self, text: str) -> Iterator[Callable[[str], None]]:
        """A spinner while something slow runs; yields a function that changes its text."""
        if self.plain:
            self._print(text, markup=False)
            yield lambda message: None
            return
        with self.console.status(Text(text, style=STYLE_HINT)) as st:
            yield lambda message: st.update(Text(message, style=STYLE_HINT))

    def answer(self, model_name: str, *, think_open: bool | None = None) -> AnswerView:
        """Start a streamed answer. `think_open`: True when the prompt left a `<think>` open (see
        `think.prompt_opens_think`), False when it did not, None to guess from the output."""
        view = AnswerView(self, model_name, think_open)
        view.start()
        return view

    # -- screenshots ----------------------------------------------------------------------
    def export_svg(self, path: str | Path, *, title: str = "qwenchat") -> None:
        """Save what went into scrollback as an SVG (needs a console from `make_console(record=True)`)."""
        if self._recorder is None:
            raise RuntimeError("export_svg needs a recording console: make_console(..., record=True)")
        Path(path).write_text(self._recorder.export_svg(title=title, clear=False), encoding="utf-8")
