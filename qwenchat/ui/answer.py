"""One streamed answer on the terminal (`AnswerView`); see `render.py` for how it is shown."""

from __future__ import annotations

import math
import time
from types import TracebackType
from typing import Any, Protocol, TextIO

from rich.console import Console, ConsoleOptions
from rich.control import Control
from rich.segment import ControlType, Segment
from rich.text import Text

from qwenchat.engines.api import TurnStats
from qwenchat.text.think import OPEN as THINK_OPEN
from qwenchat.text.think import ThinkEvent, ThinkSplitter
from qwenchat.text.visible import VisibleStream, visible_controls
from qwenchat.ui.markdown_stream import (
    AnswerMarkdown,
    BlockStream,
    blank_line_flags,
    last_lines,
    split_preview,
)
from qwenchat.ui.prefill_line import PrefillLine
from qwenchat.ui.preview import PreviewMarkdown, code_lines, text_lines, widest_line
from qwenchat.ui.terminal import STYLE_HEADER, STYLE_THINK, LiveRegion, ansi_lines


class Host(Protocol):
    """What an answer view needs of the renderer that opened it (the Renderer facade is one)."""

    console: Console
    side: Console | None
    think: str
    plain: bool
    markdown: bool
    refresh_interval: float
    _recorder: Any

    def clock(self) -> float: ...

    def _print(self, *objects: Any, **kwargs: Any) -> None: ...

    def error(self, text: str) -> None: ...

    def hint(self, text: str) -> None: ...

    def notice(self, text: str) -> None: ...


THINK_MODES = ("show", "fold", "hide")
CODE_THEME = "monokai"
REFRESH_INTERVAL = 0.08  # s between redraws of the live tail (12.5 Hz)
# Without being told whether the output starts inside a think block, this much text is held back from
# scrollback (it stays visible in the live region) so that a `</think>` among it can still fold it.
UNDECIDED_HOLD_CHARS = 2000
DRAW_SHARE = 25  # a redraw that took t seconds waits at least 25 t before the next (<= 4% of the time)
_SPINNER = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"


def _think_summary(tokens: int, seconds: float, note: str = "") -> str:
    unit = "token" if tokens == 1 else "tokens"
    text = f"▸ thought for {tokens} {unit}, {seconds:.1f} s"
    return f"{text} ({note})" if note else text


_UNFINISHED = {"interrupted": "interrupted", "length": "stopped at max_new_tokens", "error": "error"}


class AnswerView:
    """One streamed answer: feed text as it arrives, then end it once."""

    def __init__(self, renderer: Host, model_name: str, think_open: bool | None = None) -> None:
        self.r = renderer
        self.model_name = visible_controls(model_name)  # a server's model id is the server's text
        self.think_mode = renderer.think if renderer.think in THINK_MODES else "fold"
        self.styled = not renderer.plain  # escape codes allowed
        self.live_markdown = renderer.markdown and self.styled
        self._clock = renderer.clock
        self._interval = renderer.refresh_interval
        self._chunks: list[str] = []
        self._text: str | None = ""
        # The model's text is shown with its control characters visible (`qwenchat.text.visible`), before the
        # markdown parser or a pipe sees it; `text` keeps it as it came.
        self._visible = VisibleStream()
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
        self._box_key: tuple[object, int] | None = None  # the code block being previewed, and its widest line
        self._box_widest = 0
        self._next_refresh = -math.inf
        self._feeds = 0
        self._t_first: float | None = None
        self._ended = False
        self._prefill = PrefillLine(_progress_file(renderer), self._clock)

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

    def prefill(self, done: int, total: int) -> None:
        """The engine computed `done` of the `total` prompt tokens it prefills this turn."""
        if not self._ended and self._t_first is None:
            self._prefill.update(done, total)

    def feed(self, text: str) -> None:
        if not text or self._ended:
            return
        self._prefill.clear()
        self._chunks.append(text)
        self._text = None
        now = self._clock()
        if self._t_first is None:
            self._t_first = now
        self._feeds += 1
        for ev in self._splitter.feed(self._visible.feed(text)):
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
        self._prefill.clear()
        try:
            now = self._clock()
            for ev in self._splitter.feed(self._visible.flush()) + self._splitter.finish():
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
            self.r.notice("stopped at max_new_tokens (:continue goes on, :conf max_new_tokens=N raises it)")
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
        width, height = console.size
        rows = max(1, height - 2)
        options = console.options.update(width=max(1, width), height=None)
        lines = self._live_lines(console, options, rows)[-rows:]
        self._region.update(ansi_lines(console, lines), width, height)

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
            code = last_lines(self._blocks.tail[fence.content_start :], rows, budget).rstrip()
            widest = self._widest(fence, code, width)
            return code_lines(console, options, code, fence.lexer, CODE_THEME, widest)
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
            widest = self._widest(cut.done, body, width)
            code = code_lines(console, narrow, body, cut.lexer, CODE_THEME, widest)
            return self._preview_lines + [[pad, *line] for line in code]
        lines = self._markdown_lines(console, options, cut.live)
        if lines and not lines[0]:
            lines = lines[1:]  # rich opens every list with a blank line
        return self._preview_lines + lines

    def _widest(self, block: object, code: str, width: int) -> int:
        """The widest line the code block being previewed has shown so far: the box it is drawn in only
        grows, so its cached lines stay valid while the long lines scroll out of view."""
        widest = widest_line(code)
        if self._box_key == (block, width):
            widest = max(widest, self._box_widest)
        self._box_key, self._box_widest = (block, width), widest
        return widest

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


def _progress_file(renderer: Host) -> TextIO | None:
    """Where the prefill line can be drawn in place: the terminal, or stderr when stdout is a pipe."""
    console = renderer.side if renderer.plain and renderer.side is not None else renderer.console
    return console.file if console.is_terminal and not console.is_dumb_terminal else None


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
