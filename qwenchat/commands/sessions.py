"""Commands that keep a conversation beyond the chat: :save, :load, :sessions, :resume and :export.

Files are never overwritten unless the command ends in `!`; the writes are atomic (conversation/store.py).
"""

from __future__ import annotations

from pathlib import Path

from qwenchat.commands.registry import CommandContext, CommandError, command
from qwenchat.conversation.store import TargetExists
from qwenchat.paths import expand_user


def _user_path(args: str, usage: str) -> Path:
    """A file name the user typed; one that names no usable path (an unknown ~user, a NUL byte) is a
    one-line PathError, not a crash."""
    if not args:
        raise CommandError(f"usage: {usage}")
    return expand_user(args)


def _refused_overwrite(path: Path, forced_command: str) -> CommandError:
    return CommandError(f"{path} exists; {forced_command} overwrites it")


@command(
    "save",
    usage=":save [file]",
    help="Save the conversation, settings, seed and model name as JSON (never over an existing file).",
    example=":save chat.json",
)
def cmd_save(ctx: CommandContext, args: str) -> None:
    _save(ctx, args, overwrite=False)


@command(
    "save!",
    usage=":save! [file]",
    help="Save as :save does, replacing the file if it exists.",
    example=":save! chat.json",
)
def cmd_save_over(ctx: CommandContext, args: str) -> None:
    _save(ctx, args, overwrite=True)


def _save(ctx: CommandContext, args: str, *, overwrite: bool) -> None:
    s = ctx.session
    path = _user_path(args, ":save [file]") if args else Path.cwd() / f"qwenchat-{s.session_id}.json"
    try:
        s.save(path, overwrite=overwrite)
    except TargetExists:
        raise _refused_overwrite(path, f":save! {args}".rstrip()) from None
    ctx.renderer.info(f"saved to {path}")


@command(
    "load",
    usage=":load file",
    help="Load a saved conversation (it replaces the current one, whose autosave is kept).",
    example=":load chat.json",
)
def cmd_load(ctx: CommandContext, args: str) -> None:
    from qwenchat.conversation.store import load_file

    saved = load_file(_user_path(args, ":load file"))
    ctx.session.adopt(saved)
    ctx.renderer.info(f"loaded {args}: {saved.conversation.exchanges()} exchanges")


@command(
    "sessions",
    usage=":sessions",
    help="List autosaved sessions (newest first); :resume reopens one.",
    example=":sessions",
)
def cmd_sessions(ctx: CommandContext, args: str) -> None:
    store = ctx.session.store
    if store is None:
        raise CommandError("autosave is off in this session")
    sessions = store.list()
    if not sessions:
        ctx.renderer.hint("(no saved sessions)")
        return
    rows = [
        (str(i), s.id, s.updated[:16].replace("T", " "), s.model, s.title) for i, s in enumerate(sessions, 1)
    ]
    ctx.renderer.table(rows, headers=("#", "id", "updated", "model", "first message"), title="Sessions")


@command(
    "resume",
    usage=":resume [N|id|last]",
    help="Reopen an autosaved session (see :sessions); last is the newest one not from a pipe run.",
    example=":resume 2",
)
def cmd_resume(ctx: CommandContext, args: str) -> None:
    store = ctx.session.store
    if store is None:
        raise CommandError("autosave is off in this session")
    saved = store.resolve(args or "last")
    ctx.session.adopt(saved, session_id=saved.id, created=saved.created)
    ctx.renderer.info(f"resumed {saved.id}: {saved.conversation.exchanges()} exchanges")


@command(
    "export",
    usage=":export file.md",
    help="Write the conversation as readable Markdown (never over an existing file).",
    example=":export chat.md",
)
def cmd_export(ctx: CommandContext, args: str) -> None:
    _export(ctx, args, overwrite=False)


@command(
    "export!",
    usage=":export! file.md",
    help="Export as :export does, replacing the file if it exists.",
    example=":export! chat.md",
)
def cmd_export_over(ctx: CommandContext, args: str) -> None:
    _export(ctx, args, overwrite=True)


def _export(ctx: CommandContext, args: str, *, overwrite: bool) -> None:
    from qwenchat.conversation.export import to_markdown
    from qwenchat.conversation.store import atomic_write_text, check_target
    from qwenchat.probs.export import tokens_json, tokens_path

    s = ctx.session
    path = _user_path(args, ":export file.md")
    tokens = tokens_json(s.conversation, model=s.model)  # None unless an answer has token data
    files = [(path, None), *([(tokens_path(path), tokens)] if tokens is not None else [])]
    for target, _ in files:
        try:
            check_target(target, overwrite=overwrite)
        except TargetExists:
            raise _refused_overwrite(target, f":export! {args}") from None
    files[0] = (
        path,
        to_markdown(
            s.conversation, model=s.model, settings_overrides=s.settings.overrides, seed=s.settings.seed
        ),
    )
    for target, text in files:
        try:
            atomic_write_text(target, text)
        except OSError as exc:
            raise CommandError(f"cannot write {target}: {exc.strerror or exc}") from None
    beside = f" (token data in {files[1][0].name})" if len(files) > 1 else ""
    ctx.renderer.info(f"exported to {path}{beside}")
