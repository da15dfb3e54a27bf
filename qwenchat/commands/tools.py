""":tools and :tool-result: the tool-call test bench (the logic lives in qwenchat/tools/)."""

from __future__ import annotations

import json

from qwenchat.commands.registry import CommandContext, CommandError, command
from qwenchat.tools.calls import ToolsError, pending_calls, read_result


@command(
    "tools",
    usage=":tools [FILE|off|show]",
    help="Load OpenAI-style function definitions from a JSON file (checked; passed to the chat template "
    "or the server), turn them off, or show them.",
    arg_words=lambda ctx: ["off", "show"],
    example=":tools tools.json",
)
def cmd_tools(ctx: CommandContext, args: str) -> None:
    box = ctx.session.toolbox
    if args == "off":
        box.off()
        ctx.renderer.info("tools off")
        return
    if args and args != "show":
        try:
            box.load(args)
        except ToolsError as exc:
            for line in str(exc).splitlines():
                ctx.renderer.error(line)
            raise CommandError(f"{args}: tools not loaded (nothing changed)") from None
        ctx.renderer.info(f"{len(box.names)} tool(s) from {args}: {', '.join(box.names)}")
        return
    if box.definitions is None:
        ctx.renderer.info("no tools loaded (:tools FILE.json)")
        return
    ctx.renderer.info(f"tools from {box.source}:")
    ctx.renderer.text(json.dumps(box.definitions, ensure_ascii=False, indent=2))
    if box.mocks:
        ctx.renderer.info(f"mocked (from {box.mocks_source}): {', '.join(box.mocks)}")


@command(
    "tool-result",
    usage=":tool-result JSON|@file",
    help="Answer the next pending tool call with a result (JSON, or a file's JSON); once every call is "
    "answered the model goes on.",
    example=':tool-result {"temperature": 21}',
)
def cmd_tool_result(ctx: CommandContext, args: str) -> None:
    s = ctx.session
    pending = pending_calls(s.conversation.messages)
    if not pending:
        raise CommandError("no tool call is waiting for a result")
    try:
        content = read_result(args)
    except ToolsError as exc:
        raise CommandError(str(exc)) from None
    if s.tool_result(content) is None:
        rest = pending_calls(s.conversation.messages)
        ctx.renderer.info(f"result for {pending[0]['name']} kept; next: {rest[0]['name']} ({len(rest)} left)")
