"""Commands that shape the next answer or what it is about: :json (a JSON schema), :prefill (the answer's
start), :read (files in the next message) and :model (another model, same conversation)."""

from __future__ import annotations

import json
from typing import Any

from qwenchat.commands.registry import CommandContext, CommandError, command
from qwenchat.engines.api import SupportsSchemaPreparation
from qwenchat.paths import expand_user
from qwenchat.text.fences import one_line


@command(
    "json",
    usage=":json [FILE|off]",
    help="Constrain answers to JSON valid for the schema in FILE and check each one; off stops; no argument "
    "shows the active schema.",
    arg_words=lambda ctx: ["off"],
    example=":json person.schema.json",
)
def cmd_json(ctx: CommandContext, args: str) -> None:
    s = ctx.session
    if not args:
        if s.json_schema is None:
            ctx.renderer.info("no JSON schema: answers are free text (:json FILE sets one)")
        else:
            ctx.renderer.info("answers are constrained to this JSON schema:")
            ctx.renderer.text(json.dumps(s.json_schema, indent=2, ensure_ascii=False))
        return
    if args.lower() == "off":
        s.json_schema = None
        ctx.renderer.info("JSON schema off: answers are free text")
        return
    from qwenchat.structured.schema import load_schema

    s.json_schema = set_schema(ctx, load_schema(expand_user(args)))
    ctx.renderer.info(f"answers are now JSON for the schema in {one_line(args, 200)}, checked after each")


def set_schema(ctx: CommandContext, schema: dict) -> dict:
    """A schema checked for this engine. In-process, the grammar is compiled now (a schema llguidance
    cannot use is refused here, in one line) and llguidance's copy of the tokenizer is built once (about a
    second), so the first answer does not wait for either."""
    engine = ctx.session.engine
    if isinstance(engine, SupportsSchemaPreparation):  # transformers
        engine.check_schema(schema)
        if not engine.schema_tokenizer_ready():
            with ctx.renderer.status("preparing the tokenizer for JSON answers …"):
                engine.prepare_schema_tokenizer()
    return schema


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


@command(
    "read",
    usage=":read PATH...",
    help="Put the text of each file (fenced, with its name) before your next message.",
    example=":read src/main.py README.md",
)
def cmd_read(ctx: CommandContext, args: str) -> None:
    import shlex

    from qwenchat.chat.attach import read_file

    try:
        names = shlex.split(args)
    except ValueError as exc:
        raise CommandError(f":read: {exc}") from None
    if not names:
        pending = ctx.session.attachments
        if pending:
            ctx.renderer.info("the next message gets: " + ", ".join(one_line(a.name, 80) for a in pending))
        else:
            raise CommandError("usage: :read PATH... (the files go before your next message)")
        return
    files = [read_file(expand_user(name), name) for name in names]  # one bad file: none is added
    counts = ctx.session.attach(files)
    ctx.renderer.info(f"read {len(files)} file{'s' if len(files) > 1 else ''}: {counts}; type your message")


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
