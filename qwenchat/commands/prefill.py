""":prefill: the start of the next answer, which the model continues."""

from __future__ import annotations

from qwenchat.commands.registry import CommandContext, command
from qwenchat.text.fences import one_line


@command(
    "prefill",
    usage=":prefill [TEXT]",
    help="Start the next answer with TEXT (the model continues it; it stays part of the answer); no "
    "argument clears it.",
    example=':prefill {"name": "',
)
def cmd_prefill(ctx: CommandContext, args: str) -> None:
    s = ctx.session
    if not args:
        was, s.prefill = s.prefill, None
        ctx.renderer.info("prefill cleared" if was else "no prefill set (:prefill TEXT sets one)")
        return
    s.prefill = args
    ctx.renderer.info(f"the next answer starts with: {one_line(args, 200)}")
