"""Commands about the model: :model (another model, same conversation) and :adapter (LoRA adapters)."""

from __future__ import annotations

from qwenchat.commands.registry import CommandContext, CommandError, command
from qwenchat.engines.api import SupportsAdapters


@command(
    "model",
    usage=":model [SPEC]",
    help="Load another model (anything -c takes, or demo); the conversation, system prompt and settings "
    "carry over.",
    example=":model demo",
)
def cmd_model(ctx: CommandContext, args: str) -> None:
    switch = ctx.switch_model
    if not args:
        ctx.renderer.info(f"model: {ctx.session.model}")
        return
    if switch is None:
        raise CommandError(":model is not available in this chat")
    switch(args)


def _adapter_words(ctx: CommandContext) -> list[str]:
    engine = ctx.session.engine
    return ["off", "on", *engine.adapters()] if isinstance(engine, SupportsAdapters) else []


def adapter_line(ctx: CommandContext) -> str | None:
    """`adapter: my-lora (loaded: my-lora)`, for :adapter and :conf; None without adapters."""
    engine = ctx.session.engine
    if not isinstance(engine, SupportsAdapters) or engine.describe_adapter() is None:
        return None
    return f"adapter: {engine.describe_adapter()} (loaded: {', '.join(engine.adapters())})"


@command(
    "adapter",
    usage=":adapter [off|on|NAME]",
    help="Show the active LoRA adapter, or switch: off (the base model), on (all loaded), or one by name; "
    "no reload (the kept cache is recomputed).",
    arg_words=_adapter_words,
    example=":adapter off",
)
def cmd_adapter(ctx: CommandContext, args: str) -> None:
    engine = ctx.session.engine
    if not isinstance(engine, SupportsAdapters):
        raise CommandError("this engine cannot switch adapters (the transformers engine can, with --adapter)")
    if args:
        if len(args.split()) != 1:
            raise CommandError("usage: :adapter [off|on|NAME]")
        engine.set_adapter(args.strip())
    line = adapter_line(ctx)
    if line is None:
        raise CommandError("no switchable LoRA adapter is loaded (--adapter DIR, without --merge-adapter)")
    ctx.renderer.info(line)
