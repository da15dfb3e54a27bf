"""A conversation as a readable Markdown document (for `:export`).

The answers are already Markdown and go in verbatim; everything the user typed goes into fenced blocks so a
stray `#` or fence in a message cannot reshape the document. Control characters are written visibly.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from qwenchat.conversation.model import Conversation
from qwenchat.images.ref import ImageRef
from qwenchat.text.fences import closing_fence, fenced
from qwenchat.text.think import split_think
from qwenchat.text.visible import visible_controls

TITLE_WIDTH = 60

_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>#|~])")  # enough to keep a title one plain heading


def one_line(text: str) -> str:
    """Whitespace (newlines too) collapsed and control characters dropped: safe for a title or a table."""
    cleaned = "".join(c if c.isprintable() or c in " \t\n" else " " for c in text)
    return " ".join(cleaned.split())


def conversation_title(conversation: Conversation, width: int = TITLE_WIDTH) -> str:
    """The first non-blank line of the first user message, shortened; "(empty)" when nobody spoke yet."""
    for m in conversation.messages:
        if m.role != "user":
            continue
        for line in m.content.splitlines():
            line = one_line(line)
            if line:
                return line if len(line) <= width else line[: width - 1].rstrip() + "…"
    return "(empty)"


def _escape_inline(text: str) -> str:
    return _MD_SPECIAL.sub(r"\\\1", one_line(text))


def _code_span(text: str) -> str:
    text = one_line(text)
    longest = max((len(r) for r in re.findall(r"`+", text)), default=0)
    ticks = "`" * (longest + 1)
    pad = " " if text.startswith("`") or text.endswith("`") or not text else ""
    return f"{ticks}{pad}{text}{pad}{ticks}"


_fenced = fenced  # moved to qwenchat.text.fences, where :read uses it too


def _blockquote(text: str) -> str:
    return "\n".join(f"> {line}".rstrip() for line in text.replace("\r\n", "\n").split("\n"))


def _closed(markdown: str) -> str:
    """Close a fence the text left open, or it would swallow the rest of the document."""
    fence = closing_fence(markdown)
    return markdown.rstrip("\n") + f"\n{fence}" if fence else markdown


def _setting(key: str, value: Any) -> str:
    try:
        shown = json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        shown = repr(value)
    return _code_span(f"{key}={shown}")


def pretty_args(call: Mapping[str, Any]) -> str:
    return json.dumps(call.get("arguments", {}), ensure_ascii=False, indent=2)


def _image_links(images: tuple[ImageRef, ...], missing: tuple[ImageRef, ...]) -> list[str]:
    """The message's images as Markdown image links to their files (a viewer shows them beside the text)."""
    lines = [
        f"![{_escape_inline(r.label)}]({Path(r.path).as_uri()}) ({_escape_inline(r.describe())})"
        for r in images
    ]
    lines += [f"*(image {_escape_inline(r.label)}: gone or changed, not seen by the model)*" for r in missing]
    return [*lines, ""] if lines else []


def to_markdown(
    conversation: Conversation,
    *,
    model: str,
    settings_overrides: Mapping[str, Any] | None = None,
    seed: int | None = None,
    date: datetime | None = None,
) -> str:
    """The whole conversation as one Markdown document ending in a newline."""
    when = (date or datetime.now().astimezone()).strftime("%Y-%m-%d %H:%M")
    title = conversation_title(conversation)
    parts = [f"# {_escape_inline(title if title != '(empty)' else f'Chat with {model}')}", ""]
    header = [f"- **Model:** {_code_span(model)}", f"- **Date:** {when}"]
    if seed is not None:
        header.append(f"- **Seed:** {seed}")
    if settings_overrides:
        shown = ", ".join(_setting(k, settings_overrides[k]) for k in sorted(settings_overrides))
        header.append(f"- **Settings:** {shown}")
    parts += header + [""]
    if conversation.system:
        parts += ["**System prompt:**", "", _blockquote(conversation.system), ""]
    assistant = _escape_inline(model) or "Assistant"
    for m in conversation.messages:
        parts.append("---")
        parts.append("")
        if m.role == "user":
            parts += ["## You", "", _fenced(m.content), ""]
            parts += _image_links(m.images, m.missing_images)
            continue
        if m.role == "tool":
            parts += [f"## Tool result: {_code_span(m.name or '?')}", "", _fenced(m.content, "json"), ""]
            continue
        parts += [f"## {assistant}", ""]
        think, answer = split_think(m.content)
        if think is not None and think.strip():
            # A `</details>` line in the thinking would end the fold early; the entity renders the same.
            body = _closed(think.strip("\n")).replace("</details", "&lt;/details")
            parts += ["<details><summary>Thinking</summary>", "", body, "", "</details>", ""]
        if answer.strip():
            parts += [_closed(answer.strip("\n")), ""]
        elif not m.interrupted and not m.tool_calls:
            parts += ["*(no answer)*", ""]
        for call in m.tool_calls or []:
            parts += [
                f"**Tool call** {_code_span(call['name'])}:",
                "",
                _fenced(pretty_args(call), "json"),
                "",
            ]
        if m.interrupted:
            parts += ["*(interrupted)*", ""]
    # Control characters in any of it (a model's, a server's, a session file's) are written visibly, as the
    # terminal shows them: a file read with `cat` must not send them either. (Titles drop them: one_line.)
    return visible_controls("\n".join(parts).rstrip("\n") + "\n")
