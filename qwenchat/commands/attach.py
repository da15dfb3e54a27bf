""":read: files put before the next message (chat/attach.py reads them)."""

from __future__ import annotations

from qwenchat.commands.registry import CommandContext, CommandError, command
from qwenchat.paths import expand_user
from qwenchat.text.fences import one_line


@command(
    "read",
    usage=":read PATH...",
    help="Put the text of each file (fenced, with its name) before your next message.",
    example=":read src/main.py README.md",
)
def cmd_read(ctx: CommandContext, args: str) -> None:
    from qwenchat.chat.attach import read_file

    pending = [a.name for a in ctx.session.attachments]
    names = file_args(
        ctx, "read", args, pending, "usage: :read PATH... (the files go before your next message)"
    )
    if not names:
        return
    files = [read_file(expand_user(name), name) for name in names]  # one bad file: none is added
    counts = ctx.session.attach(files)
    ctx.renderer.info(f"read {len(files)} file{'s' if len(files) > 1 else ''}: {counts}; type your message")


def file_args(ctx: CommandContext, name: str, args: str, pending: list[str], usage: str) -> list[str]:
    """The paths a command was given (shell-quoted); with none, what the next message gets is shown (an
    empty list), or the usage when nothing is pending (CommandError). `:read` and `:image` share it."""
    import shlex

    try:
        names = shlex.split(args)
    except ValueError as exc:
        raise CommandError(f":{name}: {exc}") from None
    if not names:
        if not pending:
            raise CommandError(usage)
        ctx.renderer.info("the next message gets: " + ", ".join(one_line(p, 80) for p in pending))
    return names
