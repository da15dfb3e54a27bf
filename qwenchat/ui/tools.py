"""A tool call as a panel: the tool's name, its arguments pretty-printed, and what is wrong with it (invalid
JSON, an unknown tool, a block never closed). Every piece may come from a model or a server: it goes
through `visible_controls` here, and rich markup is never interpreted (Text objects only)."""

from __future__ import annotations

import json
from typing import Any

from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.text import Text

from qwenchat.text.visible import visible_controls as safe
from qwenchat.ui.terminal import STYLE_ERROR, STYLE_HINT


def call_parts(call: Any) -> tuple[str, str, str | None]:
    """(name, arguments text, problem) of a tools.ToolCall or a stored {"name", "arguments"} dict."""
    if isinstance(call, dict):
        args = json.dumps(call.get("arguments", {}), ensure_ascii=False, indent=2)
        return call.get("name") or "?", args, None
    if call.arguments is not None:
        args = json.dumps(call.arguments, ensure_ascii=False, indent=2)
    else:
        args = call.raw
    return call.name or "?", args, call.problem


def plain_lines(call: Any) -> list[str]:
    name, args, problem = call_parts(call)
    head = f"tool call: {safe(name)}" + (f"  [{safe(problem)}]" if problem else "")
    return [head, *("  " + line for line in safe(args).splitlines())]


def panel(call: Any) -> RenderableType:
    name, args, problem = call_parts(call)
    body: list[RenderableType] = [Text(safe(args))]
    if problem:
        body.append(Text("⚠ " + safe(problem), style=STYLE_ERROR))
    title = Text.assemble(("tool call ", STYLE_HINT), (safe(name), "bold"))
    return Panel(
        Group(*body),
        title=title,
        title_align="left",
        border_style="red" if problem else "cyan",
        expand=False,
    )
