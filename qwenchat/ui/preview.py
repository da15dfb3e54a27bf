"""The live preview's drawing: code (and thought) lines rendered once and cached, so a redraw of the live
tail costs the same however long its code block grows; `PreviewMarkdown` is what the live region shows."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Any, ClassVar

from pygments.lexer import Lexer
from pygments.lexers import get_lexer_by_name
from pygments.util import ClassNotFound
from rich.cells import cell_len
from rich.console import Console, ConsoleOptions, RenderResult
from rich.markdown import CodeBlock, Markdown, MarkdownElement
from rich.segment import Segment
from rich.syntax import Syntax, SyntaxTheme
from rich.text import Text

from qwenchat.ui.markdown_stream import AnswerMarkdown

# ------------------------------------------------------------------------------------
# Re-highlighting a code block at every redraw costs ~1 ms per line (pygments plus rich's wrapping), so the
# preview renders each finished line of code (or of thought) once and keeps its segments. Lines are lexed
# one by one, so a multi-line string may be coloured differently until its block reaches scrollback, where the
# whole block is highlighted at once.

Lines = list[list[Segment]]


class LineCache:
    """Rendered segments of single source lines, least recently used dropped first."""

    def __init__(self, size: int = 4096) -> None:
        self.size = size
        self._d: OrderedDict[tuple[Any, ...], Lines] = OrderedDict()

    def get(self, key: tuple[Any, ...], make: Callable[[], Lines]) -> Lines:
        lines = self._d.get(key)
        if lines is not None:
            self._d.move_to_end(key)
            return lines
        lines = self._d[key] = make()
        if len(self._d) > self.size:
            self._d.popitem(last=False)
        return lines


LINE_CACHE = LineCache()
_LEXERS: dict[str, Lexer | None] = {}
_THEMES: dict[str, SyntaxTheme] = {}


def _lexer(name: str) -> Lexer | None:
    if name not in _LEXERS:
        try:
            _LEXERS[name] = get_lexer_by_name(name, stripnl=False, ensurenl=True)
        except ClassNotFound:
            _LEXERS[name] = None
    return _LEXERS[name]


def _theme(name: str) -> SyntaxTheme:
    if name not in _THEMES:
        _THEMES[name] = Syntax.get_theme(name)
    return _THEMES[name]


def _code_line(console: Console, line: str, lexer: Lexer | None, theme: SyntaxTheme, width: int) -> Lines:
    """One line of code as rich's Syntax(word_wrap=True, padding=1) draws it, at a fraction of the cost."""
    base = theme.get_background_style()
    text = Text(style=base, end="")
    line = line.expandtabs(4)
    if lexer is None:
        text.append(line)
    else:
        for token_type, value in lexer.get_tokens(line):
            text.append(value, theme.get_style_for_token(token_type))
        text.remove_suffix("\n")
    inner = max(1, width - 2)
    pad = Segment(" ", base)
    out: Lines = []
    for piece in text.wrap(console, inner, overflow="fold") or [Text("")]:
        segments = list(piece.render(console, end=""))
        fill = inner - piece.cell_len
        out.append([pad, *segments, Segment(" " * fill, base), pad] if fill > 0 else [pad, *segments, pad])
    return out


def widest_line(code: str) -> int:
    """Cells of the widest line of `code` as a code block shows it (tabs are 4)."""
    return max(map(cell_len, code.expandtabs(4).split("\n")), default=0)


def code_lines(
    console: Console, options: ConsoleOptions, code: str, lexer_name: str, theme: str, widest: int = 0
) -> Lines:
    """A code block as rich's CodeBlock draws it (theme background, one cell of padding), line by line;
    finished lines come from the cache. Only as wide as its widest line (or `widest`, what the block had so
    far), not the whole row: a live row that does not reach the edge does not re-wrap when the window narrows
    a little (see `terminal.LiveRegion`)."""
    width = min(options.max_width, max(widest, widest_line(code)) + 2)
    lexer = _lexer(lexer_name)
    syntax_theme = _theme(theme)
    blank = LINE_CACHE.get(
        ("code-pad", theme, width), lambda: [[Segment(" " * width, syntax_theme.get_background_style())]]
    )
    lines = code.split("\n")
    out: Lines = list(blank)
    for i, line in enumerate(lines):
        if i == len(lines) - 1:  # may be unfinished: not worth keeping
            out.extend(_code_line(console, line, lexer, syntax_theme, width))
        else:
            key = ("code", lexer_name, theme, width, line)
            out.extend(
                LINE_CACHE.get(key, lambda line=line: _code_line(console, line, lexer, syntax_theme, width))
            )
    out.extend(blank)
    return out


def text_lines(console: Console, options: ConsoleOptions, text: str, style: str, rows: int) -> Lines:
    """The last `rows` screen lines of `text` wrapped at the console width; finished lines are cached."""
    width = options.max_width
    opts = options.update(width=width, height=None)

    def render(line: str) -> Callable[[], Lines]:
        return lambda: console.render_lines(Text(line, style=style), opts, pad=False)

    out: Lines = []
    pos = len(text)
    first = True
    while pos >= 0 and len(out) < rows:
        start = text.rfind("\n", 0, pos) + 1
        line = text[start:pos]
        if first:  # the unfinished line
            if len(line) > rows * width:
                line = line[-rows * width :]
            got = render(line)()
            first = False
        else:
            got = LINE_CACHE.get(("text", style, width, line), render(line))
        out[:0] = got
        pos = start - 1
    return out[-rows:]


class PreviewCodeBlock(CodeBlock):
    """CodeBlock for the live preview: per-line cached highlighting."""

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        new_line = Segment.line()
        for line in code_lines(console, options, str(self.text).rstrip(), self.lexer_name, self.theme):
            yield from line
            yield new_line


class PreviewMarkdown(AnswerMarkdown):
    """What the live region shows of the unfinished tail (code blocks drawn from the line cache)."""

    elements: ClassVar[dict[str, type[MarkdownElement]]] = {
        **Markdown.elements,
        "fence": PreviewCodeBlock,
        "code_block": PreviewCodeBlock,
    }
