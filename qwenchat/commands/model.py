"""Commands about the model: :model (another model, same conversation) and :adapter (LoRA adapters); and
start_flags, what the chat's flags set up before the first prompt."""

from __future__ import annotations

from typing import Any

from qwenchat.commands.registry import CommandContext, CommandError, command
from qwenchat.commands.structured import set_schema
from qwenchat.paths import expand_user


@command(
    "model",
    usage=":model [SPEC]",
    help="Load another model (anything -c takes, or demo); the conversation, system prompt and settings "
    "carry over.",
    example=":model demo",
)
def cmd_model(ctx: CommandContext, args: str) -> None:
    switch = getattr(ctx, "switch_model", None)
    if not args:
        ctx.renderer.info(f"model: {ctx.session.model}")
        return
    if switch is None:
        raise CommandError(":model is not available in this chat")
    switch(args)


def start_flags(ctx: CommandContext, args: Any, prepared: dict[str, Any], make: Any) -> None:
    """What --json-schema, --read and :model need from the start: UserError (one line) when a flag's file
    cannot be used."""
    from qwenchat.chat.switch import Switcher, switch_in_chat

    layers = prepared["file"].get("generation", {}), prepared["flags"]
    switcher = Switcher(args, *layers, make)
    ctx.switch_model = lambda spec: switch_in_chat(ctx, switcher, spec)
    if prepared.get("schema") is not None:
        ctx.session.json_schema = set_schema(ctx, prepared["schema"])
    if args.read:
        from qwenchat.chat.attach import read_file

        files = [read_file(expand_user(name), name) for name in args.read]
        counts = ctx.session.attach(files)
        ctx.renderer.info(f"read {len(files)} file{'s' if len(files) > 1 else ''}: {counts}")


def _adapter_words(ctx: CommandContext) -> list[str]:
    engine = ctx.session.engine
    return ["off", "on", *engine.adapters()] if hasattr(engine, "adapters") else []


def adapter_line(ctx: CommandContext) -> str | None:
    """`adapter: my-lora (loaded: my-lora)`, for :adapter and :conf; None without adapters."""
    engine = ctx.session.engine
    if not hasattr(engine, "describe_adapter") or engine.describe_adapter() is None:
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
    if not hasattr(engine, "set_adapter"):
        raise CommandError("this engine cannot switch adapters (the transformers engine can, with --adapter)")
    if args:
        if len(args.split()) != 1:
            raise CommandError("usage: :adapter [off|on|NAME]")
        engine.set_adapter(args.strip())
    line = adapter_line(ctx)
    if line is None:
        raise CommandError("no switchable LoRA adapter is loaded (--adapter DIR, without --merge-adapter)")
    ctx.renderer.info(line)
