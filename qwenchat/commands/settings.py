"""Commands about the generation settings: :seed, :conf and :reset-conf (settings.py holds the layers)."""

from __future__ import annotations

from qwenchat.commands.registry import CommandContext, command


@command(
    "seed",
    usage=":seed [N]",
    help="Show the random seed, or set it (applied before every turn).",
    example=":seed 42",
)
def cmd_seed(ctx: CommandContext, args: str) -> None:
    if args:
        ctx.session.settings.set_seed(args)
    ctx.renderer.info(f"seed: {ctx.session.settings.seed}")


@command(
    "conf",
    usage=":conf [key=value ...|all]",
    help="Show the generation settings that differ from the model's, all of them, or set some; values "
    "are Python literals.",
    arg_words=lambda ctx: ctx.session.settings.words(),  # only what this engine honours
    example=":conf temperature=0.2 stop_strings=['END']",
)
def cmd_conf(ctx: CommandContext, args: str) -> None:
    s = ctx.session.settings
    if args and args != "all":
        applied = s.apply(args)
        ctx.renderer.info("set " + ", ".join(f"{k}={v!r}" for k, v in applied.items()))
        return
    if args == "all":
        values = s.all_values()
        rows = [(k, repr(v), "*" if k in s.overrides else "") for k, v in sorted(values.items())]
        ctx.renderer.table(rows, headers=("setting", "value", "changed"), title="All generation settings")
        return
    rows = [
        (k, repr(v), "you" if k in s.overrides else s.sources.get(k, "model"))
        for k, v in sorted(s.effective().items())
    ]
    ctx.renderer.table(rows, headers=("setting", "value", "from"), title="Generation settings")
    from qwenchat.commands.model import adapter_line  # the active LoRA adapter, when there are any

    if (line := adapter_line(ctx)) is not None:
        ctx.renderer.info(line)
    changed = s.changed()
    ctx.renderer.hint(
        (f"changed by you: {', '.join(changed)}. " if changed else "")
        + ":conf all lists every setting; :conf key=value sets; :reset-conf [key] restores."
    )


@command(
    "reset-conf",
    usage=":reset-conf [key ...]",
    help="Restore the model's generation settings and the starting seed, or only the settings named.",
    arg_words=lambda ctx: [*ctx.session.settings.overrides, "seed"],
    example=":reset-conf stop_strings",
)
def cmd_reset_conf(ctx: CommandContext, args: str) -> None:
    if args:
        restored = ctx.session.settings.reset_keys(args.split())
        ctx.renderer.info("restored " + ", ".join(f"{k}={v!r}" for k, v in restored.items()))
        return
    ctx.session.settings.reset()
    ctx.renderer.info("Generation settings and seed restored.")
