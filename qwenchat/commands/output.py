"""Commands that shape the next answer or what it is about: :json (a JSON schema), :prefill (the answer's
start), :read (files in the next message) and :model (another model, same conversation)."""

from __future__ import annotations

import json

from qwenchat.commands.registry import CommandContext, CommandError, command
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
    if getattr(engine, "tokenizer", None) is not None and hasattr(engine, "eos_ids"):  # transformers
        from qwenchat.structured.schema import grammar, ll_tokenizer, tokenizer_ready

        grammar(schema)
        if not tokenizer_ready(engine.tokenizer):
            vocab = engine.model.config.get_text_config().vocab_size
            with ctx.renderer.status("preparing the tokenizer for JSON answers …"):
                ll_tokenizer(engine.tokenizer, vocab, engine.eos_ids)
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
    switch = ctx.switch_model
    if not args:
        ctx.renderer.info(f"model: {ctx.session.model}")
        return
    if switch is None:
        raise CommandError(":model is not available in this chat")
    switch(args)
