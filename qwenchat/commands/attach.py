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
