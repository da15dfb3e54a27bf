"""Compared answers side by side (rich Table columns) or one after another, and a word diff of two.

The text is the model's: its control characters are shown, never sent (visible.py), and a think block
is left out (the answer is what is compared; :diff compares the whole text).
"""

from __future__ import annotations

from collections.abc import Sequence

from rich import box
from rich.console import Group, RenderableType
from rich.markdown import Markdown
from rich.table import Table
from rich.text import Text

from qwenchat.text.think import split_think
from qwenchat.text.visible import visible_controls as safe
from qwenchat.ui.terminal import STYLE_HEADER

MIN_COLUMN = 32  # narrower, a column of prose is a word per line
CODE_THEME = "monokai"
DIFF_STYLES = {"delete": "bold red strike", "insert": "bold green underline"}
DIFF_MARKS = {"delete": ("[-", "-]"), "insert": ("{+", "+}")}


def _body(text: str, markdown: bool) -> RenderableType:
    _, answer = split_think(text)
    answer = safe(answer.strip("\n"))
    if markdown:
        return Markdown(answer, code_theme=CODE_THEME)
    return Text(answer)


def fits_side_by_side(count: int, width: int) -> bool:
    return 1 < count and count * (MIN_COLUMN + 3) <= width


def side_by_side(items: Sequence[tuple[str, str]], *, markdown: bool) -> Table:
    """(title, answer) pairs as the columns of one table."""
    table = Table(box=box.SIMPLE_HEAD, expand=True, show_edge=False, padding=(0, 1))
    for title, _ in items:
        table.add_column(Text(safe(title), style=STYLE_HEADER), ratio=1, overflow="fold")
    table.add_row(*[_body(text, markdown) for _, text in items])
    return table


def one_after_another(items: Sequence[tuple[str, str]], *, markdown: bool) -> Group:
    parts: list[RenderableType] = []
    for title, text in items:
        parts.append(Text("── " + safe(title), style=STYLE_HEADER))
        parts.append(_body(text, markdown))
    return Group(*parts)


def diff_text(pieces: Sequence[tuple[str, str]], *, marks: bool) -> Text:
    """A word diff (worddiff.word_diff) as one text: colours, or [-…-]/{+…+} marks without them."""
    out = Text()
    for i, (op, words) in enumerate(pieces):
        if i:
            out.append(" ")
        words = safe(words)
        if op == "equal":
            out.append(words)
        elif marks:
            left, right = DIFF_MARKS[op]
            out.append(f"{left}{words}{right}")
        else:
            out.append(words, style=DIFF_STYLES[op])
    return out
