"""Commands for trying a prompt again and keeping what worked: system, retry, undo, edit, save, export...

They change the conversation only through ChatSession's methods, each of which is all-or-nothing.
"""

from __future__ import annotations

import random
from pathlib import Path

from qwenchat.commands.registry import CommandContext, CommandError, command
from qwenchat.errors import first_line
from qwenchat.session import DEFAULT_SYSTEM
from qwenchat.text import one_line


def _user_path(args: str, usage: str) -> Path:
    """A file name the user typed; one that the OS cannot take is a CommandError, not a crash."""
    if not args:
        raise CommandError(f"usage: {usage}")
    if "\x00" in args:
        raise CommandError(f"not a valid file name: {args!r}")
    return Path(args).expanduser()


@command(
    "system",
    usage=":system [text|-|default]",
    help="Show the system prompt, set it, remove it (-), or restore the default.",
    arg_words=lambda ctx: ["-", "default"],
)
def cmd_system(ctx: CommandContext, args: str) -> None:
    if not args:
        system = ctx.session.conversation.system
        ctx.renderer.info("system prompt: " + ("(none)" if system is None else one_line(system, 400)))
        return
    new = None if args == "-" else DEFAULT_SYSTEM if args == "default" else args
    ctx.session.set_system(new)
    ctx.renderer.info("system prompt removed." if new is None else f"system prompt set: {one_line(new)}")


@command(
    "retry",
    "regen",
    usage=":retry [seed]",
    help="Drop the last answer and generate it again, with a new random seed or the one given.",
)
def cmd_retry(ctx: CommandContext, args: str) -> None:
    s = ctx.session
    if s.last_role() != "assistant":
        raise CommandError("there is no answer to retry yet")
    previous_seed = s.settings.seed
    s.settings.set_seed(args or str(random.randrange(2**31)))
    ctx.renderer.hint(f"seed {s.settings.seed} (:seed {previous_seed} goes back)")
    s.retry()  # a failed turn keeps the old answer


@command("undo", help="Remove the last exchange (your message and its answer).")
def cmd_undo(ctx: CommandContext, args: str) -> None:
    removed = ctx.session.undo()
    first = next((m.content for m in removed if m.role == "user"), "")
    ctx.renderer.info(f"removed the last exchange: {one_line(first)}")


@command("edit", help="Edit your last message in $EDITOR, then send it in its place.")
def cmd_edit(ctx: CommandContext, args: str) -> None:
    from qwenchat.editor import edit_text

    old = ctx.session.last_user_text()
    if old is None:
        raise CommandError("no message of yours to edit yet")
    new = edit_text(old).strip("\n")
    if not new.strip():
        raise CommandError("the edited message is empty; nothing changed")
    ctx.session.edit(new)


@command("continue", help="Let the model go on with its last answer (after a length stop or Ctrl-C).")
def cmd_continue(ctx: CommandContext, args: str) -> None:
    ctx.session.continue_()


@command("save", usage=":save [file]", help="Save the conversation, settings, seed and model name as JSON.")
def cmd_save(ctx: CommandContext, args: str) -> None:
    s = ctx.session
    path = _user_path(args, ":save [file]") if args else Path.cwd() / f"qwenchat-{s.session_id}.json"
    s.save(path)
    ctx.renderer.info(f"saved to {path}")


@command("load", usage=":load file", help="Load a saved conversation (the current one is replaced).")
def cmd_load(ctx: CommandContext, args: str) -> None:
    from qwenchat.store import load_file

    saved = load_file(_user_path(args, ":load file"))
    ctx.session.adopt(saved)
    ctx.renderer.info(f"loaded {args}: {saved.conversation.exchanges()} exchanges")


@command("sessions", usage=":sessions", help="List autosaved sessions (newest first); :resume reopens one.")
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


@command("resume", usage=":resume [N|id|last]", help="Reopen an autosaved session (see :sessions).")
def cmd_resume(ctx: CommandContext, args: str) -> None:
    store = ctx.session.store
    if store is None:
        raise CommandError("autosave is off in this session")
    saved = store.resolve(args or "last")
    ctx.session.adopt(saved, session_id=saved.id, created=saved.created)
    ctx.renderer.info(f"resumed {saved.id}: {saved.conversation.exchanges()} exchanges")


@command("export", usage=":export file.md", help="Write the conversation as readable Markdown.")
def cmd_export(ctx: CommandContext, args: str) -> None:
    from qwenchat.export import to_markdown
    from qwenchat.store import atomic_write_text

    s = ctx.session
    path = _user_path(args, ":export file.md")
    text = to_markdown(
        s.conversation, model=s.model, settings_overrides=s.settings.overrides, seed=s.settings.seed
    )
    try:
        atomic_write_text(path, text)
    except OSError as exc:
        raise CommandError(f"cannot write {path}: {exc.strerror or exc}") from None
    ctx.renderer.info(f"exported to {path}")


@command(
    "copy",
    usage=":copy [N|code]",
    help="Copy the last (or Nth) answer, or its last code block, to the clipboard (OSC 52).",
    arg_words=lambda ctx: ["code"],
)
def cmd_copy(ctx: CommandContext, args: str) -> None:
    from qwenchat.clipboard import osc52, support_note
    from qwenchat.text import last_code_block

    answers = ctx.session.answers()
    if not answers:
        raise CommandError("no answer to copy yet")
    if args == "code":
        text = last_code_block(answers[-1])
        if text is None:
            raise CommandError("the last answer has no code block")
        what = "the last code block"
    elif args:
        if not args.isdigit() or not 1 <= int(args) <= len(answers):
            raise CommandError(f":copy takes code or an answer number from 1 to {len(answers)}")
        text, what = answers[int(args) - 1], f"answer {args}"
    else:
        text, what = answers[-1], "the last answer"
    ctx.renderer.raw(osc52(text))
    ctx.renderer.info(f"copied {what} ({len(text)} characters) to the clipboard")
    note = support_note()
    if note:
        ctx.renderer.hint(note)


@command("template", help="Show the exact prompt the model will see next (chat template applied).")
def cmd_template(ctx: CommandContext, args: str) -> None:
    s = ctx.session
    try:
        text = s.engine.render_prompt(s.request(extra_user="<your next message>"))
    except NotImplementedError as exc:  # a remote engine: the server applies the template
        raise CommandError(first_line(exc)) from None
    except Exception as exc:  # the template's own error, shown as one line
        raise CommandError(f"the chat template failed: {first_line(exc)}") from None
    ctx.renderer.text(text)


@command("tokens", help="Token counts of the conversation against the model's context window.")
def cmd_tokens(ctx: CommandContext, args: str) -> None:
    s = ctx.session
    try:
        used = s.engine.count_tokens(s.request(extra_user=""))
    except NotImplementedError as exc:
        raise CommandError(first_line(exc)) from None
    except Exception as exc:
        raise CommandError(f"cannot count tokens: {first_line(exc)}") from None
    window = s.engine.context_window
    budget = s.settings.effective().get("max_new_tokens", 0) or 0
    if window:
        left = window - used - budget
        spare = f"{left} to spare" if left >= 0 else f"over by {-left}: the oldest exchanges will be dropped"
        ctx.renderer.info(
            f"{used} tokens in the conversation + {budget} max_new_tokens of a {window}-token context"
            f" ({spare})"
        )
    else:
        ctx.renderer.info(f"{used} tokens in the conversation (context window unknown)")
