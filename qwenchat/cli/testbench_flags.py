"""The command-line side of the reasoning switch and the tool bench: --reasoning, --reasoning-budget,
--tools, --tool-mocks. Files are checked before the model loads, so a bad one costs no wait."""

from __future__ import annotations

import argparse
from typing import Any

from qwenchat.reasoning import MODES, parse_budget
from qwenchat.tools.turns import ToolBox


def add_flags(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("reasoning and tools")
    g.add_argument(
        "--reasoning",
        choices=MODES,
        default="auto",
        help="enable_thinking for chat templates that read it (Qwen3); auto: the template's default",
    )
    g.add_argument(
        "--reasoning-budget",
        metavar="N",
        help="close the think block after N tokens and go on with the answer",
    )
    g.add_argument("--tools", metavar="FILE.json", help="OpenAI-style function definitions for the model")
    g.add_argument(
        "--tool-mocks",
        metavar="FILE.json",
        help='answer tool calls by name from {"tool": result, ...} and let the model go on',
    )


def load_toolbox(args: argparse.Namespace) -> ToolBox:
    """The tools and mocks the flags name, checked (ToolsError listing every problem)."""
    box = ToolBox()
    if args.tools:
        box.load(args.tools)
    if args.tool_mocks:
        box.load_mocks(args.tool_mocks)
    parse_budget(args.reasoning_budget)  # ReasoningError now, not after the load
    return box


def apply(session: Any, args: argparse.Namespace, box: ToolBox) -> list[str]:
    """Put the flags into a new session; returns notices (a template without the switch)."""
    from qwenchat.commands.reasoning import set_budget, set_mode

    session.toolbox = box
    line = set_mode(session, args.reasoning)
    set_budget(session, args.reasoning_budget)
    return [line] if line else []


def error_lines(exc: BaseException) -> list[str]:
    """A tools file's error has one line per problem; any other error is one line."""
    from qwenchat.errors import first_line
    from qwenchat.tools.calls import ToolsError

    if isinstance(exc, ToolsError):
        return str(exc).strip().splitlines()
    return [first_line(exc)]
