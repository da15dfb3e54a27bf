""":json: answers constrained to a JSON schema and checked (the logic lives in qwenchat/structured/)."""

from __future__ import annotations

import json

from qwenchat.commands.registry import CommandContext, command
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
