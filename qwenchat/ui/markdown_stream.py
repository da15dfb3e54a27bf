"""Find the finished top-level blocks of a growing markdown text, so each is rendered once.

The text arrives a token at a time. What is known to be final is cut off the front (`take()`) and printed
into scrollback; only the unfinished tail is ever re-rendered. Finished means: the parser (the same
markdown-it rules that rich's `Markdown` renders with) sees another top-level block start after it.
CommonMark never reopens a block once a sibling has started, so parsing the tail alone gives the same blocks
as parsing the whole text, and printing block after block gives the same output as rendering the whole
answer at once. A blank line is therefore not a boundary by itself: `- item\\n\\n  more` continues the item
and a fence keeps its blank lines. A closed fence, a heading and a thematic break are final as soon as their
last line is complete.

Cost: only complete lines are parsed, only when a line could start a new block (`_may_start_block`), and
inside an open top-level fence only a line that could close it triggers a parse. So the work per token does
not grow with the answer, and a 300-line code fence is not re-parsed per line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from markdown_it import MarkdownIt
from markdown_it.token import Token
from rich.markdown import Markdown, UnknownElement

from qwenchat.text.fences import block_parser, fence_is_closed

# The parser rich's Markdown uses, with raw HTML off: rich drops HTML it does not know (`<answer>` would
# vanish), and as text it stays visible. Block boundaries come from the same rules, block rules only
# (`text.block_parser()`, which also finds the fences for :copy, :export and :continue).
_RENDER_PARSER = MarkdownIt("commonmark", {"html": False}).enable("strikethrough").enable("table")

_FINAL_WHEN_COMPLETE = {"heading_open", "hr"}  # single blocks that no later line can extend
_BLOCK_START_CHARS = set("#>`~=-*_+|0123456789")
_LIST_ITEM = re.compile(r"^(?:[-*+]|\d{1,9}[.)])(?:[ \t]|$)", re.MULTILINE)
_TABLE_DELIMITER = re.compile(r"^ {0,3}\|?\s*:?-+:?\s*(\|\s*:?-+:?\s*)*\|?\s*$")


class AnswerMarkdown(Markdown):
    """rich's Markdown with HTML read as text, so `<answer>` and friends stay visible, and a single newline
    kept as a line break (as chat UIs show it: poems, logs and addresses keep their lines).

    Links show their real target: no OSC 8 hyperlinks (`[https://safe.example/](http://evil.example/x)`
    would hide where it goes), rich writes "text (url)" instead, or the text alone when it is the url.

    Parses with one shared parser: rich's own constructor builds a new MarkdownIt (about 1 ms) every time.
    """

    def __init__(self, markup: str, code_theme: str = "monokai", hyperlinks: bool = False) -> None:
        self.markup = markup
        self.parsed = _RENDER_PARSER.parse(markup)
        if not hyperlinks:
            _unlink_self_links(self.parsed)
        _hard_breaks(self.parsed)
        self.code_theme = code_theme
        self.justify = None
        self.style = "none"
        self.hyperlinks = hyperlinks
        self.inline_code_lexer = None
        self.inline_code_theme = code_theme


def _unlink_self_links(tokens: list[Token]) -> None:
    """Links whose text is their target (`<https://x.example>`) become that text: "url (url)" says nothing."""
    for token in tokens:
        kids = token.children
        if not kids:
            continue
        for i in range(len(kids) - 2, 0, -1):
            opening, text, closing = kids[i - 1], kids[i], kids[i + 1]
            if opening.type == "link_open" and text.type == "text" and closing.type == "link_close":
                href = str(opening.attrs.get("href", ""))
                if text.content in (href, href.removeprefix("mailto:")):
                    kids[i - 1 : i + 2] = [text]


def _hard_breaks(tokens: list[Token]) -> None:
    """Soft line breaks become hard ones (rich renders a soft break as a space)."""
    for token in tokens:
        for child in token.children or ():
            if child.type == "softbreak":
                child.type = "hardbreak"


@dataclass
class PreviewSplit:
    """The unfinished tail cut for the live preview: `done` renders the same at every redraw (its lines are
    kept), `live` is re-rendered, or, when the last list item ends in an open code block, `code` is drawn from
    the line cache, indented by `indent` cells under its bullet."""

    done: str
    live: str
    code: str | None = None
    lexer: str = "text"
    indent: int = 0


_NESTED_FENCE = re.compile(r"^( +)(`{3,}|~{3,})\s*([^`\s]*)[^`]*$")


def split_preview(src: str) -> PreviewSplit:
    """A top-level list is cut at its last item; nothing else is cut."""
    last = _LIST_ITEM.match(src)
    if last is None:
        return PreviewSplit("", src)
    for last in _LIST_ITEM.finditer(src):  # noqa: B007
        pass
    done, item = src[: last.start()], src[last.start() :]
    lines = item.split("\n")
    # (column where an item's content starts, cells rich indents it by), outermost first
    levels = [(len(last.group(0)) + (not last.group(0)[-1].isspace()), _marker_cells(last.group(0)))]
    fence: tuple[int, int, str, str, int] | None = None  # line, indent, markup, lexer, cells
    for i in range(1, len(lines) - 1):  # the last line may be unfinished
        line = lines[i]
        indent = len(line) - len(line.lstrip(" "))
        if fence is not None:
            if _closes(line[fence[1] :] if indent >= fence[1] else line, fence[2]):
                fence = None
            continue
        nested = _LIST_ITEM.match(line[indent:])
        if nested and line.strip():
            while len(levels) > 1 and indent < levels[-1][0]:
                levels.pop()
            if indent >= levels[-1][0]:
                marker = nested.group(0)
                col = indent + len(marker) + (not marker[-1].isspace())
                levels.append((col, levels[-1][1] + _marker_cells(marker)))
            continue
        m = _NESTED_FENCE.match(line)
        if m:
            for col, cells in reversed(levels):
                if col <= indent < col + 4:
                    fence = (i, indent, m.group(2), m.group(3) or "text", cells)
                    break
    if fence is None:
        return PreviewSplit(done, item)
    at, indent, _, lexer, cells = fence
    body = [line[indent:] if line[:indent].isspace() else line.lstrip() for line in lines[at + 1 :]]
    return PreviewSplit(done + "\n".join(lines[:at]) + "\n", "", "\n".join(body), lexer, cells)


def _marker_cells(marker: str) -> int:
    """How far rich indents an item's content: ' • ' for bullets, the number and two cells for numbers."""
    digits = marker.strip().rstrip(".)")
    return len(digits) + 2 if digits.isdigit() else 3


def blank_line_flags(md: Markdown, new_line: bool) -> tuple[bool, bool]:
    """Mirror of the `new_line` bookkeeping in rich's `Markdown.__rich_console__`: whether a blank line
    goes before the first top-level element when the text before left the flag at `new_line`, and the flag
    after the last element. A list or a quote sets the flag from its own items, so it is preceded by a blank
    line even at the very start; a thematic break clears it."""
    first: bool | None = None
    depth = 0
    for token in md._flatten_tokens(md.parsed):
        kind = token.type
        if kind in ("text", "hardbreak", "softbreak", "link_open", "link_close", "html_inline"):
            continue
        if token.tag in md.inlines and kind not in ("fence", "code_block"):
            continue
        if token.nesting == 1:
            depth += 1
            continue
        if token.nesting == -1:
            depth -= 1
            if depth == 0 and first is None:
                first = new_line
        elif depth == 0 and first is None:
            first = new_line and kind != "inline"
        new_line = (md.elements.get(kind) or UnknownElement).new_line
    return bool(first), new_line


@dataclass
class OpenFence:
    """The top-level fence the tail ends in: where its content starts and what closes it."""

    header: str  # the opening line, e.g. "```python"
    content_start: int  # offset in the tail of the first content line
    markup: str  # "```" or "~~~~" ...
    lexer: str = "text"  # the info string's first word, as rich's CodeBlock reads it


def _indent(line: str) -> int:
    return len(line) - len(line.expandtabs(4).lstrip(" "))


def _closes(line: str, markup: str) -> bool:
    """Whether `line` closes a top-level fence opened with `markup` (< 4 spaces, same char, >= length)."""
    if _indent(line) >= 4:
        return False
    s = line.strip()
    return len(s) >= len(markup) and s == s[0] * len(s) and s[0] == markup[0]


def _may_start_block(line: str, prev_blank: bool) -> bool:
    """A cheap over-approximation of 'this complete line may begin a new top-level block'."""
    s = line.lstrip()
    if not s:
        return False
    if prev_blank:
        return True
    return _indent(line) < 4 and s[0] in _BLOCK_START_CHARS


class BlockStream:
    """Accumulates markdown; `take()` returns the newly finished source, `tail` is what is still live."""

    def __init__(self) -> None:
        self.tail = ""
        self.fence: OpenFence | None = None
        self._scanned = 0  # tail[:_scanned] is whole lines already looked at
        self._prev_blank = True
        self._dirty = False  # a line that may start a block was seen since the last parse
        self.parses = 0

    def append(self, text: str) -> None:
        self.tail += text

    def take(self) -> str:
        """Cut the finished blocks off the tail and return their source ('' when none finished)."""
        end = self.tail.rfind("\n") + 1
        if end <= self._scanned:
            return ""
        new = self.tail[self._scanned : end]
        self._scanned = end
        if self.fence is not None:
            lines = new.splitlines()
            self._prev_blank = not lines[-1].strip()
            if not any(_closes(line, self.fence.markup) for line in lines):
                return ""
            self._dirty = True
        else:
            for line in new.splitlines():
                if _may_start_block(line, self._prev_blank):
                    self._dirty = True
                self._prev_blank = not line.strip()
            if not self._dirty:
                return ""
        return self._parse()

    def _parse(self) -> str:
        self._dirty = False
        self.parses += 1
        region = self.tail[: self._scanned]
        blocks = [t for t in block_parser().parse(region) if t.level == 0 and t.nesting >= 0 and t.map]
        self.fence = None
        if not blocks:
            return ""
        starts = _line_starts(region)
        last = blocks[-1]
        cut_at = len(blocks) - 1
        if last.type in _FINAL_WHEN_COMPLETE:
            cut_at = len(blocks)
        elif last.type == "fence":
            first = last.map[0]  # type: ignore[index]
            if fence_is_closed(last):
                cut_at = len(blocks)
            else:
                header = region[starts[first] : starts[first + 1]].rstrip("\n")
                lexer = last.info.partition(" ")[0] or "text"
                self.fence = OpenFence(header, starts[first + 1], last.markup, lexer)
        if cut_at == 0:
            return ""
        off = starts[blocks[cut_at].map[0]] if cut_at < len(blocks) else len(region)  # type: ignore[index]
        done = self.tail[:off]
        self.tail = self.tail[off:]
        self._scanned -= off
        if self.fence is not None:
            self.fence.content_start -= off
        return done

    def flush(self) -> str:
        """Everything left, finished or not (the answer ended)."""
        done, self.tail = self.tail, ""
        self._scanned = 0
        self.fence = None
        return done

    def preview_source(self, max_lines: int, max_chars: int) -> str:
        """A bounded piece of the tail that renders like its end: the open fence's header plus its last lines,
        a table's header plus its last rows, or the last lines of the block. The live region shows only its
        last lines anyway, and the whole block goes to scrollback when it is finished."""
        if self.fence is not None:
            body = last_lines(self.tail[self.fence.content_start :], max_lines, max_chars)
            return self.fence.header + "\n" + body
        tail = self.tail
        if _LIST_ITEM.match(tail):  # a list is cut at an item, or its numbers and nesting go wrong
            # The last item that still has max_lines lines from its start on (or the first item): one pass,
            # not a count from every item, which grew with the square of a long list's length.
            cut = _nth_newline_from_end(tail, max_lines)
            start = 0
            for item in _LIST_ITEM.finditer(tail):
                if item.start() > cut:
                    break
                start = item.start()
            out = tail[start:]
            # The last item whole, even when long (a code block in it): split_preview() then redraws only
            # its end. Past a hard cap, a piece of it has to do.
            return out if len(out) <= 16 * max_chars else last_lines(out, max_lines, max_chars)
        out = last_lines(tail, max_lines, max_chars)
        if len(out) < len(tail):  # a table keeps its header
            head = tail[: tail.find("\n", tail.find("\n") + 1) + 1]
            is_table = head.count("\n") == 2 and _TABLE_DELIMITER.match(head.split("\n")[1])
            if is_table and len(head) < max_chars:
                out = head + out if len(tail) - len(out) >= len(head) else tail
        return out


def _line_starts(text: str) -> list[int]:
    """Offsets where each line starts, plus len(text) (so starts[i + 1] ends line i)."""
    starts = [0]
    i = text.find("\n")
    while i >= 0:
        starts.append(i + 1)
        i = text.find("\n", i + 1)
    if starts[-1] != len(text):
        starts.append(len(text))
    return starts


def _nth_newline_from_end(text: str, n: int) -> int:
    """Where the `n`-th newline from the end of `text` is; -1 when it has fewer."""
    pos = len(text)
    for _ in range(n):
        pos = text.rfind("\n", 0, pos)
        if pos < 0:
            return -1
    return pos


def last_lines(text: str, n: int, max_chars: int) -> str:
    """The last `n` lines of `text` (the unfinished last line counts), at most about `max_chars` long."""
    out = text[_nth_newline_from_end(text, n) + 1 :]
    if len(out) > max_chars:
        out = out[-max_chars:]
        cut = out.find("\n")
        if 0 <= cut < len(out) - 1:
            out = out[cut + 1 :]  # not a piece of a line
    return out
