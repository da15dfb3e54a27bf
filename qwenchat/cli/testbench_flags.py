"""The command-line side of the reasoning switch and the tool bench: --reasoning, --reasoning-budget,
--tools, --tool-mocks. Files are checked before the model loads, so a bad one costs no wait."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from qwenchat.reasoning import MODES, parse_budget
from qwenchat.tools.turns import ToolBox

if TYPE_CHECKING:
    from qwenchat.cli.options import ChatOptions


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


def load_toolbox(options: ChatOptions) -> ToolBox:
    """The tools and mocks the flags name, checked (ToolsError listing every problem)."""
    box = ToolBox()
    if options.tools:
        box.load(options.tools)
    if options.tool_mocks:
        box.load_mocks(options.tool_mocks)
    parse_budget(options.reasoning_budget)  # ReasoningError now, not after the load
    return box


def apply(session: Any, options: ChatOptions, box: ToolBox) -> list[str]:
    """Put the flags into a new session; returns notices (a template without the switch)."""
    from qwenchat.commands.reasoning import set_budget, set_mode

    session.toolbox = box
    line = set_mode(session, options.reasoning)
    set_budget(session, options.reasoning_budget)
    return [line] if line else []


def error_lines(exc: BaseException) -> list[str]:
    """A tools file's error has one line per problem; any other error is one line."""
    from qwenchat.errors import first_line
    from qwenchat.tools.calls import ToolsError

    if isinstance(exc, ToolsError):
        return str(exc).strip().splitlines()
    return [first_line(exc)]
