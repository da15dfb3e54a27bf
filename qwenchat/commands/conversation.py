"""Commands for trying a prompt again and keeping what worked: system, retry, undo, edit, save, export...

They change the conversation only through ChatSession's methods, each of which is all-or-nothing.
"""

from __future__ import annotations

import random
from pathlib import Path

from qwenchat.commands.reasoning import template_notes
from qwenchat.commands.registry import CommandContext, CommandError, command
from qwenchat.conversation.model import DEFAULT_SYSTEM
from qwenchat.conversation.store import TargetExists
from qwenchat.errors import first_line
from qwenchat.paths import expand_user
from qwenchat.text.fences import one_line
from qwenchat.text.numbers import parse_index


def _user_path(args: str, usage: str) -> Path:
    """A file name the user typed; one that names no usable path (an unknown ~user, a NUL byte) is a
    one-line PathError, not a crash."""
    if not args:
        raise CommandError(f"usage: {usage}")
    return expand_user(args)


def _refused_overwrite(path: Path, forced_command: str) -> CommandError:
    return CommandError(f"{path} exists; {forced_command} overwrites it")


@command(
    "system",
    usage=":system [text|-|default]",
    help="Show the system prompt, set it, remove it (-), or restore the default.",
    arg_words=lambda ctx: ["-", "default"],
    example=":system You are a terse assistant.",
)
def cmd_system(ctx: CommandContext, args: str) -> None:
    if not args:
        system = ctx.session.conversation.system
        ctx.renderer.info("system prompt: " + ("(none)" if system is None else one_line(system, 400)))
    else:
        new = None if args == "-" else DEFAULT_SYSTEM if args == "default" else args
        ctx.session.set_system(new)
        ctx.renderer.info("system prompt removed." if new is None else f"system prompt set: {one_line(new)}")
    if ctx.session.conversation.system is None:
        inserted = ctx.session.template_system()  # "none" is not what the model sees then
        if inserted is not None:
            ctx.renderer.notice(
                f"the chat template then inserts its own system prompt: {one_line(inserted, 300)}"
            )


@command(
    "retry",
    "regen",
    usage=":retry [seed]",
    help="Drop the last answer and generate it again, with a new random seed or the one given.",
    example=":retry 7",
)
def cmd_retry(ctx: CommandContext, args: str) -> None:
    s = ctx.session
    if s.last_role() != "assistant":
        raise CommandError("there is no answer to retry yet")
    previous_seed = s.settings.seed
    s.settings.set_seed(args or str(random.randrange(2**31)))
    ctx.renderer.hint(f"seed {s.settings.seed} (:seed {previous_seed} goes back)")
    s.retry()  # a failed turn keeps the old answer


@command("undo", help="Remove the last exchange (your message and its answer).", example=":undo")
def cmd_undo(ctx: CommandContext, args: str) -> None:
    removed = ctx.session.undo()
    if len(removed) == 1 and removed[0].replaces is not None:
        ctx.renderer.info("removed the :branch answer; the answer it replaced is back")
        return
    first = next((m.content for m in removed if m.role == "user"), "")
    ctx.renderer.info(f"removed the last exchange: {one_line(first)}")


@command("edit", help="Edit your last message in $EDITOR, then send it in its place.", example=":edit")
def cmd_edit(ctx: CommandContext, args: str) -> None:
    from qwenchat.ui.editor import edit_text

    old = ctx.session.last_user_text()
    if old is None:
        raise CommandError("no message of yours to edit yet")
    new = edit_text(old).strip("\n")
    if not new.strip():
        raise CommandError("the edited message is empty; nothing changed")
    ctx.renderer.text("› " + new)  # what is sent, as if typed at the prompt
    ctx.session.edit(new)


@command(
    "continue",
    help="Let the model go on with its last answer (after a length stop or Ctrl-C).",
    example=":continue",
)
def cmd_continue(ctx: CommandContext, args: str) -> None:
    ctx.session.continue_()


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


@command(
    "copy",
    usage=":copy [N|code]",
    help="Copy the last (or Nth) answer, or its last code block, to the clipboard (OSC 52).",
    arg_words=lambda ctx: ["code"],
    example=":copy code",
)
def cmd_copy(ctx: CommandContext, args: str) -> None:
    from qwenchat.text.fences import last_code_block
    from qwenchat.ui.clipboard import osc52, support_note

    answers = ctx.session.answers()
    if not answers:
        raise CommandError("no answer to copy yet")
    if args == "code":
        text = last_code_block(answers[-1])
        if text is None:
            raise CommandError("the last answer has no code block")
        what = "the last code block"
    elif args:
        n = parse_index(args, ":copy takes code or an answer number", len(answers))
        text, what = answers[n - 1], f"answer {n}"
    else:
        text, what = answers[-1], "the last answer"
    ctx.renderer.raw(osc52(text))
    ctx.renderer.info(f"copied {what} ({len(text)} characters) to the clipboard")
    note = support_note()
    if note:
        ctx.renderer.hint(note)


@command(
    "template",
    help="Show the exact prompt the model will see next (chat template applied).",
    example=":template",
)
def cmd_template(ctx: CommandContext, args: str) -> None:
    s = ctx.session
    try:
        text = s.engine.render_prompt(s.request(extra_user="<your next message>"))
    except NotImplementedError as exc:  # a remote engine: the server applies the template
        raise CommandError(first_line(exc)) from None
    except Exception as exc:  # the template's own error, shown as one line
        raise CommandError(f"the chat template failed: {first_line(exc)}") from None
    ctx.renderer.text(text)
    for note in template_notes(s):  # the reasoning switch's effect, the tools carried
        ctx.renderer.hint(note)


@command(
    "tokens",
    help="Token counts of the conversation against the model's context window.",
    example=":tokens",
)
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
