"""Commands about what is shown and how: help, exit, clear, history, stats, markdown, think."""

from __future__ import annotations

from qwenchat.commands.registry import REGISTRY, CommandContext, CommandError, command, no_args, on_off


@command(
    "help",
    "h",
    usage=":help [command]",
    help="Show the commands, or one command's help.",
    arg_words=lambda ctx: REGISTRY.words(),
    example=":h conf",
)
def cmd_help(ctx: CommandContext, args: str) -> None:
    if args:
        cmd = ctx.registry.find(args.lstrip(":").lower())
        if cmd is None:
            raise CommandError(f"no command :{args.lstrip(':')}")
        aliases = ", ".join(":" + a for a in cmd.aliases)
        ctx.renderer.table([(cmd.usage, cmd.help + (f" (also {aliases})" if aliases else ""))])
        if cmd.example:
            ctx.renderer.info(f"example: {cmd.example}")
        return
    rows = []
    for cmd in ctx.registry:
        aliases = " ".join(":" + a for a in cmd.aliases)
        rows.append((cmd.usage + (f"  ({aliases})" if aliases else ""), cmd.help))
    ctx.renderer.table(rows, headers=("command", "what it does"), title="Commands")
    ctx.renderer.hint(
        "Type a message to chat. Ctrl-C stops an answer (kept, marked interrupted); Ctrl-D or :q quits."
    )
    ctx.renderer.hint(REPRODUCIBLE)


# The contract, and the features that bend it (README: Speculative decoding, GPU fast path).
REPRODUCIBLE = (
    "Reproducible: the same conversation, settings and seed give the same tokens, cache reused or not. "
    "Answers may differ at near-ties from those without: prompt lookup (--lookup) in bf16 or a quantized "
    "GGUF, and --compile in bf16 (also once its cache has grown)."
)


@command("exit", "quit", "q", help="Leave qwenchat.", example=":q")
def cmd_exit(ctx: CommandContext, args: str) -> None:
    ctx.request_exit()


@command("clear", "cl", help="Clear the screen (the history stays).", example=":cl")
def cmd_clear(ctx: CommandContext, args: str) -> None:
    no_args(args, "clear")
    ctx.renderer.clear_screen()


# :clear-history and :history live here, beside :clear, so that :help keeps its order.
@command(
    "clear-history",
    "clh",
    help="Forget the conversation so far (the system prompt stays); what follows is a new autosaved session.",
    example=":clh",
)
def cmd_clear_history(ctx: CommandContext, args: str) -> None:
    no_args(args, "clear-history")
    ctx.session.clear()
    ctx.renderer.info("History cleared.")


@command("history", "his", help="Show the conversation so far.", example=":his")
def cmd_history(ctx: CommandContext, args: str) -> None:
    no_args(args, "history")
    conv = ctx.session.conversation
    ctx.renderer.history(conv.messages, conv.system)


@command(
    "stats",
    usage=":stats [on|off]",
    help="Show whether speed and cache figures follow every answer, or turn them on or off.",
    arg_words=lambda ctx: ["on", "off"],
    example=":stats on",
)
def cmd_stats(ctx: CommandContext, args: str) -> None:
    ctx.show_stats = on_off(args, ":stats", ctx.show_stats)
    ctx.renderer.info(f"stats: {'on' if ctx.show_stats else 'off'}")
    if ctx.show_stats and ctx.session.last_stats is not None:
        ctx.renderer.stats(ctx.session.last_stats)


@command(
    "markdown",
    usage=":markdown [on|off]",
    help="Show whether answers are rendered as markdown, or turn it on or off (off: raw text).",
    arg_words=lambda ctx: ["on", "off"],
    example=":markdown off",
)
def cmd_markdown(ctx: CommandContext, args: str) -> None:
    ctx.renderer.markdown = on_off(args, ":markdown", ctx.renderer.markdown)
    ctx.renderer.info(f"markdown: {'on' if ctx.renderer.markdown else 'off'}")


@command("raw", help="Print answers as raw text (the same as :markdown off).", example=":raw")
def cmd_raw(ctx: CommandContext, args: str) -> None:
    no_args(args, "raw")
    cmd_markdown(ctx, "off")


THINK_MODES = ("show", "fold", "hide")


@command(
    "think",
    usage=":think [show|fold|hide]",
    help="How <think> reasoning is shown: streamed and kept, folded to one line, or hidden.",
    arg_words=lambda ctx: list(THINK_MODES),
    example=":think show",
)
def cmd_think(ctx: CommandContext, args: str) -> None:
    if args:
        if args.lower() not in THINK_MODES:
            raise CommandError(f":think takes one of {', '.join(THINK_MODES)}, got {args!r}")
        ctx.renderer.think = args.lower()
    ctx.renderer.info(f"think: {ctx.renderer.think}")
