"""Everything that reaches the terminal goes through here (`Renderer`); nothing else prints.

The answer view lives in `answer.py`, the console factory, the live region and the ANSI cache in
`terminal.py`; both are driven from here only.

Streaming an answer (`Renderer.answer()` -> `AnswerView`):

* Terminal with markdown on: finished markdown blocks are printed once into scrollback with rich's
  `Markdown` (`markdown_stream.BlockStream` finds them, so scrollback ends up exactly as a one-shot render
  of the whole answer); only the unfinished tail is kept in a transient live region (`LiveRegion`, rich
  `Live(transient=True)` without its cost), never taller than the terminal less two lines, redrawn from
  `feed()` at most every `refresh_interval` (12.5 Hz; rarer when a redraw is expensive) and once at `end()`.
  The work per token does not grow with the length of the answer.
* `markdown=False`, or a plain console (a pipe): the text is written as it arrives, no live region. A plain
  console gets no escape codes at all. (NO_COLOR and --no-color drop colours and styles, not the layout.)
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
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from qwenchat.engines.api import TurnStats
from qwenchat.text.visible import visible_controls as safe
from qwenchat.ui import tools as toolpanel
from qwenchat.ui.answer import REFRESH_INTERVAL, AnswerView
from qwenchat.ui.terminal import STYLE_ERROR, STYLE_HEADER, STYLE_HINT, STYLE_NOTICE, make_console

MIN_RATE_TOKENS = 8  # :stats shows a prefill rate only from this many prefilled tokens


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
        side: Console | None = None,
    ) -> None:
        self.console = console or make_console()
        # Where everything but the answers goes (stderr when stdout is a pipe); None: the console.
        self.side = side
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
                color_system="truecolor" if self.console.color_system else None,
                no_color=self.console.no_color,
                width=self.console.width,
                highlight=False,
                emoji=False,
            )

    @property
    def plain(self) -> bool:
        """No escape codes at all: not a terminal. (NO_COLOR and --no-color drop colours, not the layout.)"""
        return not self.console.is_terminal

    def _print(self, *objects: Any, **kwargs: Any) -> None:
        self.console.print(*objects, **kwargs)
        if self._recorder is not None:
            self._recorder.width = self.console.width
            self._recorder.print(*objects, **kwargs)

    def _say(self, *objects: Any, **kwargs: Any) -> None:
        """Anything but an answer: notices, errors, command output."""
        if self.side is not None:
            self.side.print(*objects, **kwargs)
        else:
            self._print(*objects, **kwargs)

    # -- one-liners -----------------------------------------------------------------------
    # Every text argument may come from a model, a server or a file: `safe()` (visible_controls) shows its
    # control characters instead of sending them, here where it enters the terminal.
    def info(self, text: str) -> None:
        self._say(escape(safe(text)))

    def notice(self, text: str) -> None:
        self._say(Text(safe(text), style=STYLE_NOTICE if not self.plain else ""))

    def error(self, text: str) -> None:
        self._say(Text("error: " + safe(text), style=STYLE_ERROR if not self.plain else ""))

    def hint(self, text: str) -> None:
        self._say(Text(safe(text), style=STYLE_HINT if not self.plain else ""))

    def text(self, text: str) -> None:
        """Verbatim text (a rendered prompt, an exported file): no markup interpretation."""
        self._say(Text(safe(text)), soft_wrap=True)

    # -- structured ------------------------------------------------------------------------
    def banner(self, *, model: str, device: str, dtype: str, extra: Sequence[str] = ()) -> None:
        model, device, dtype = safe(model), safe(device), safe(dtype)
        if self.plain:
            self._say(f"qwenchat · {model} · {device} · {dtype}", markup=False)
        else:
            line = Text.assemble(
                ("qwenchat", "bold cyan"), "  ", (model, "bold"), (f" · {device} · {dtype}", "dim")
            )
            self._say(line)
        for item in extra:
            self.hint(item)
        self.hint("Type :h for help, :q or Ctrl-D to quit, Ctrl-C to stop an answer.")

    def table(
        self, rows: Iterable[Sequence[str]], headers: Sequence[str] = (), title: str | None = None
    ) -> None:
        title = safe(title) if title else title
        if self.plain:
            if title:
                self._say(title, markup=False)
            for row in rows:
                self._say(safe("  ".join(row)), markup=False)
            return
        table = Table(title=title, show_header=bool(headers), box=None, padding=(0, 2, 0, 0))
        for h in headers or [""] * 2:
            table.add_column(safe(h), overflow="fold")
        for row in rows:
            table.add_row(*[escape(safe(c)) for c in row])
        self._say(table)

    def history(self, messages: Sequence[Any], system: str | None) -> None:
        if system:
            self._history_entry("system", system, False)
        if not messages:
            self.hint("(no history)")
        for m in messages:
            self._history_entry(m.role, m.content, m.interrupted)
            alternatives = getattr(m, "alternatives", ())
            if alternatives:  # :compare variants kept beside this answer
                labels = ", ".join(dict.fromkeys(a.label for a in alternatives))
                self.hint(f"(alternatives kept in the session: {labels})")
            for call in getattr(m, "tool_calls", None) or []:
                self.tool_call(call)

    def _history_entry(self, role: str, content: str, interrupted: bool) -> None:
        mark = " (interrupted)" if interrupted else ""
        role = safe(role)
        if role == "tool":
            role = "tool result"
        if self.plain:
            self._say(f"[{role}]{mark}", markup=False)
        else:
            self._say(Text(f"{role}{mark}", style="bold magenta" if role == "user" else STYLE_HEADER))
        self.text(content)

    def stats(self, s: TurnStats) -> None:
        parts = [
            f"prompt {s.prompt_tokens} tok (reused {s.reused_tokens}, prefilled {s.prefilled_tokens})",
            f"TTFT {s.ttft_s:.2f}s",
            # A rate over a handful of tokens measures the request's overhead, not the prefill.
            f"prefill {s.prefill_tps:.0f} tok/s" if s.prefilled_tokens >= MIN_RATE_TOKENS else "",
            f"decode {s.decode_tps:.1f} tok/s" if s.generated_tokens > 1 else "",  # a rate needs two tokens
            f"{s.generated_tokens} tok",
            f"thinking {s.thinking_tokens} · answer {s.generated_tokens - s.thinking_tokens}"
            if s.thinking_tokens
            else "",
            s.finish_reason,
        ]
        if s.peak_gpu_mem_bytes is not None:
            parts.append(f"peak GPU {s.peak_gpu_mem_bytes / 2**30:.2f} GiB")
        if s.drafted_tokens is not None:
            rate = f" ({s.acceptance:.0%})" if s.acceptance is not None else ""
            parts.append(f"drafted {s.drafted_tokens}, accepted {s.accepted_tokens or 0}{rate}")
        if s.system_fingerprint:
            parts.append(f"server fingerprint {s.system_fingerprint}")
        self.hint(" · ".join(p for p in parts if p))

    def images_attached(self, refs: Sequence[Any], tokens: Sequence[int | None]) -> None:
        """`:image`: one line per image (name, size, pixels, tokens), with a small thumbnail where the
        terminal shows colour."""
        from qwenchat.images.load import ImageError, pixels
        from qwenchat.images.thumbnail import half_blocks
        from qwenchat.ui import images as view

        color = not self.plain and not self.console.no_color and self.console.color_system is not None
        for ref, count in zip(refs, tokens, strict=True):
            self.info(view.attachment_line(ref, count))
            if color:
                try:
                    self._say(view.thumbnail(half_blocks(pixels(ref), view.THUMB_COLUMNS)))
                except ImageError:  # the line said what matters; a thumbnail is a nicety
                    pass

    def token_probs(self, probs: Sequence[Any]) -> None:
        """`:probs`: the last answer as a heat map of its token probabilities, a legend and a summary."""
        from qwenchat.ui import probs as heatmap

        color = not self.plain and not self.console.no_color and self.console.color_system is not None
        source = next((p.source for p in probs if not p.forced), "raw")
        self._say(heatmap.heat_text(probs, color=color), soft_wrap=True)
        self._say(heatmap.legend(color=color, source=source), style=STYLE_HINT if color else "")
        for line in heatmap.summary_lines(probs):
            self.info(line)

    def token_alternatives(self, index: int, prob: Any) -> None:
        """`:alt N`: the candidates at one position of the last answer."""
        from qwenchat.ui import probs as heatmap

        headers, rows = heatmap.alt_rows(prob)
        kind = "forced by :branch; " if prob.forced else ""
        self.info(f"token {index}: {kind}{heatmap.SOURCE_LABELS.get(prob.source, '')}")
        self.table(rows, headers)

    def answers(self, items: Sequence[tuple[str, str]]) -> None:
        """Finished answers, (title, text) each: side by side when the terminal is wide enough, else one
        after another. A pipe already has them on stdout, as they streamed: nothing is repeated there."""
        from qwenchat.ui.compare import fits_side_by_side, one_after_another, side_by_side

        if self.plain or not items:
            return
        if fits_side_by_side(len(items), self.console.width):
            self._print(side_by_side(items, markdown=self.markdown))
        else:
            self._print(one_after_another(items, markdown=self.markdown))

    def word_diff(self, pieces: Sequence[tuple[str, str]]) -> None:
        """A word diff: deleted words red, inserted green; [-…-] and {+…+} without colours."""
        from qwenchat.ui.compare import diff_text

        self._say(diff_text(pieces, marks=self.plain or self.console.no_color), soft_wrap=False)

    def check_verdicts(self, verdicts: Sequence[dict[str, Any]]) -> None:
        """`:check`: a line per check (✓/✗, name, detail) and how many passed."""
        from qwenchat.ui.checks import verdict_lines

        colour = not self.plain and not self.console.no_color and self.console.color_system is not None
        for line in verdict_lines(list(verdicts), colour):
            self._say(line, soft_wrap=True)

    def tool_call(self, call: Any) -> None:
        """A tool call (tools.ToolCall, or a stored one) as a panel; plain lines on a plain console."""
        if self.plain:
            for line in toolpanel.plain_lines(call):
                self._say(line, markup=False, highlight=False)
        else:
            self._say(toolpanel.panel(call))

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
            self._say(safe(text), markup=False)
            yield lambda message: None
            return
        with self.console.status(Text(safe(text), style=STYLE_HINT)) as st:
            yield lambda message: st.update(Text(safe(message), style=STYLE_HINT))

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
