"""Reading markdown answers: the code fences, parsed once, with the rules the renderer shows them by.

One block parser (markdown-it, CommonMark, raw HTML read as text, as `ui.markdown_stream` renders) finds the
fences for `:copy` (`code_blocks`, `last_code_block`), for `:export` (`open_fence`, to close a fence an
answer left open) and for `:continue` (`reopening_fence`: an answer cut inside a code fence goes on inside
it, in its language). So what is
copied is what the screen showed as a code block: fences may sit in list items or quotes, a shorter or
longer-info line does not close a fence, and an unclosed fence runs to the end of its container.
`one_line` previews user text in a notice.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from qwenchat.text.think import split_think

if TYPE_CHECKING:
    from markdown_it import MarkdownIt
    from markdown_it.token import Token


@functools.cache
def block_parser() -> MarkdownIt:
    """The one block parser: block rules only (no inline parsing), enough for fences and block boundaries.

    Built on first use, so that importing this module (the session store does, for titles) stays cheap.
    """
    from markdown_it import MarkdownIt

    return MarkdownIt("commonmark", {"html": False}).enable("strikethrough").enable("table").disable("inline")


@dataclass(frozen=True)
class Fence:
    """One fenced code block of a text."""

    markup: str  # "```", "~~~~", ...
    info: str  # the info string ("python", 'rust title="x"')
    code: str  # the content, the container's and the fence's indentation removed, no final newline
    closed: bool
    at_end: bool  # runs to the end of the text (unclosed and nothing after it: the answer was cut here)
    indent: str  # the blanks before the opening fence, what a closing fence needs to close it there


def fence_is_closed(token: Token) -> bool:
    """Whether a `fence` token had its closing line: its lines are the opening, the content, and one more."""
    assert token.map is not None
    content = token.content
    lines = content.count("\n") + (1 if content and not content.endswith("\n") else 0)
    return token.map[1] - token.map[0] - 1 > lines


def fences(markdown: str) -> list[Fence]:
    """The fenced code blocks of `markdown`, in order."""
    tokens = block_parser().parse(markdown)
    if not tokens:
        return []
    end = max(t.map[1] for t in tokens if t.map)
    lines = markdown.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    out = []
    for t in tokens:
        if t.type != "fence" or t.map is None:
            continue
        closed = fence_is_closed(t)
        code = t.content[:-1] if closed and t.content.endswith("\n") else t.content
        if not closed:
            code = code.rstrip("\n")  # the blank lines a cut answer ended with are not code
        opening = lines[t.map[0]]
        blanks = opening[: len(opening) - len(opening.lstrip(" \t"))]
        indent = blanks if opening[len(blanks) :].startswith(t.markup) else ""
        out.append(Fence(t.markup, t.info, code, closed, not closed and t.map[1] >= end, indent))
    return out


def code_blocks(markdown: str) -> list[str]:
    """The contents of the fenced code blocks (``` or ~~~, any language) of an answer, thinking left out.

    Fences may be indented (answers put them in list items); an unclosed fence runs to the end, as in
    CommonMark, so an answer cut off mid-code still yields its code.
    """
    _, answer = split_think(markdown)
    return [f.code for f in fences(answer)]


def last_code_block(markdown: str) -> str | None:
    """The last code block with something in it, or None when the answer has none."""
    for block in reversed(code_blocks(markdown)):
        if block.strip():
            return block
    return None


def open_fence(markdown: str) -> str | None:
    """The fence still open at the end of `markdown` (an answer cut off mid-code), e.g. "```", or None."""
    found = [f for f in fences(markdown) if f.at_end]
    return found[-1].markup if found else None


def reopening_fence(markdown: str) -> str | None:
    """The line that opens again the fence still open at the end of `markdown`, with its info string
    (e.g. "```python"), so that a continuation is highlighted as the code it continues; None when none."""
    found = [f for f in fences(markdown) if f.at_end]
    return found[-1].markup + found[-1].info if found else None


def closing_fence(markdown: str) -> str | None:
    """The line that closes the fence still open at the end of `markdown` where it stands, or None."""
    found = [f for f in fences(markdown) if f.at_end]
    return found[-1].indent + found[-1].markup if found else None


def one_line(text: str, limit: int = 60) -> str:
    """A short one-line preview of user text for a notice: line breaks, tabs and other control characters
    shown as single spaces, cut at `limit` characters with an ellipsis."""
    flat = " ".join("".join(c if c.isprintable() else " " for c in text).split())
    return flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "…"


def fenced(text: str, info: str = "text") -> str:
    """A block no line of `text` can close: the fence is longer than any backtick run inside."""
    longest = max((len(r) for r in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    body = text.replace("\r\n", "\n")
    return f"{fence}{info}\n{body}\n{fence}" if body else f"{fence}{info}\n{fence}"
