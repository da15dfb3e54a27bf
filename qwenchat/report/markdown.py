"""Markdown from a model as HTML that cannot carry markup of its own: markdown-it (CommonMark, tables,
strikethrough) with raw HTML off, so a `<script>` or a `</details>` in an answer is text; images off, so an
answer cannot make the page fetch anything (a report is opened offline, and a remote image would say who
opened it); links only where markdown-it's own check lets them through (no javascript:, vbscript:, file:,
data:), opened without a referrer. Control characters are made visible first (text/visible.py)."""

from __future__ import annotations

import html
from functools import lru_cache
from typing import Any

from markdown_it import MarkdownIt

from qwenchat.text.visible import visible_controls


def escape(text: Any) -> str:
    """Any value as HTML text: controls made visible, lone surrogates replaced, markup escaped."""
    return html.escape(visible_controls(str(text)), quote=True)


def _link_open(self: Any, tokens: list[Any], idx: int, options: Any, env: Any) -> str:
    tokens[idx].attrSet("rel", "noopener noreferrer nofollow")
    tokens[idx].attrSet("target", "_blank")
    return self.renderToken(tokens, idx, options, env)


def _cell_open(self: Any, tokens: list[Any], idx: int, options: Any, env: Any) -> str:
    """A table column's alignment as a class: the page's policy allows no style attributes."""
    token = tokens[idx]
    style = token.attrGet("style")
    if isinstance(style, str) and style.startswith("text-align:"):
        del token.attrs["style"]
        token.attrSet("class", "align-" + style.removeprefix("text-align:"))
    return self.renderToken(tokens, idx, options, env)


@lru_cache(maxsize=1)
def _parser() -> MarkdownIt:
    md = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False})
    md.enable("strikethrough").enable("table").disable("image")
    md.add_render_rule("link_open", _link_open)
    md.add_render_rule("th_open", _cell_open)
    md.add_render_rule("td_open", _cell_open)
    return md


def render(text: str) -> str:
    """`text` (markdown) as an HTML fragment."""
    return _parser().render(visible_controls(text))
