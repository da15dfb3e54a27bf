"""Commands for trying a prompt again and keeping what worked: system, retry, undo, edit, save, export..."""

from __future__ import annotations

import random
from pathlib import Path
from typing import TYPE_CHECKING

from qwenchat.commands.registry import CommandError, command
from qwenchat.session import DEFAULT_SYSTEM

if TYPE_CHECKING:
    from qwenchat.ui.repl import App


def _user_path(args: str, usage: str) -> Path:
    """A file name the user typed; one that the OS cannot take is a CommandError, not a crash."""
    if not args:
        raise CommandError(f"usage: {usage}")
    if "\x00" in args:
        raise CommandError(f"not a valid file name: {args!r}")
    return Path(args).expanduser()


def _last_role(app: App) -> str | None:
    msgs = app.conversation.messages
    return msgs[-1].role if msgs else None


@command(
    "system",
    usage=":system [text|-|default]",
    help="Show the system prompt, set it, remove it (-), or restore the default.",
    arg_words=lambda: ["-", "default"],
)
def cmd_system(app: App, args: str) -> None:
    conv = app.conversation
    if not args:
        app.renderer.info("system prompt: " + ("(none)" if conv.system is None else repr(conv.system)))
        return
    new = None if args == "-" else DEFAULT_SYSTEM if args == "default" else args
    old = conv.system
    conv.system = new
    try:
        app.check_template()
    except CommandError:
        conv.system = old
        raise
    app.renderer.info("system prompt removed." if new is None else f"system prompt set: {new!r}")


@command(
    "retry",
    "regen",
    usage=":retry [seed]",
    help="Drop the last answer and generate it again, with a new random seed or the one given.",
)
def cmd_retry(app: App, args: str) -> None:
    if _last_role(app) != "assistant":
        raise CommandError("there is no answer to retry yet")
    seed = args or str(random.randrange(2**31))
    previous_seed = app.settings.seed
    from qwenchat.settings import ConfigError

    try:
        app.settings.set_seed(seed)
    except ConfigError as exc:
        raise CommandError(str(exc)) from None
    app.renderer.hint(f"seed {app.settings.seed} (`:seed {previous_seed}` goes back)")
    dropped = app.conversation.messages.pop()
    if not app.run_turn():
        app.conversation.messages.append(dropped)  # nothing new: keep what was there


@command("undo", help="Remove the last exchange (your message and its answer).")
def cmd_undo(app: App, args: str) -> None:
    msgs = app.conversation.messages
    if not msgs:
        raise CommandError("nothing to undo")
    removed = []
    if msgs[-1].role == "assistant":
        removed.append(msgs.pop())
    if msgs and msgs[-1].role == "user":
        removed.append(msgs.pop())
    first = next((m.content for m in reversed(removed) if m.role == "user"), "")
    app.renderer.info(f"removed the last exchange: {first[:60]!r}")


@command("edit", help="Edit your last message in $EDITOR, then send it in its place.")
def cmd_edit(app: App, args: str) -> None:
    from qwenchat.editor import EditorError, edit_text

    msgs = app.conversation.messages
    idx = next((i for i in range(len(msgs) - 1, -1, -1) if msgs[i].role == "user"), None)
    if idx is None:
        raise CommandError("no message of yours to edit yet")
    try:
        new = edit_text(msgs[idx].content).strip("\n")
    except EditorError as exc:
        raise CommandError(str(exc)) from None
    if not new.strip():
        raise CommandError("the edited message is empty; nothing changed")
    kept = msgs[idx:]
    del msgs[idx:]
    app.conversation.add_user(new)
    if not app.run_turn():
        del msgs[idx:]
        msgs.extend(kept)


@command("continue", help="Let the model go on with its last answer (after a length stop or Ctrl-C).")
def cmd_continue(app: App, args: str) -> None:
    if _last_role(app) != "assistant":
        raise CommandError("there is no answer to continue")
    app.run_turn(continue_final=True)


@command("save", usage=":save [file]", help="Save the conversation, settings, seed and model name as JSON.")
def cmd_save(app: App, args: str) -> None:
    from qwenchat.store import StoreError, save_file

    path = _user_path(args, ":save [file]") if args else Path.cwd() / f"qwenchat-{app.session_id}.json"
    try:
        save_file(path, **app.session_fields())
    except (StoreError, OSError) as exc:
        raise CommandError(f"cannot save to {path}: {exc}") from None
    app.renderer.info(f"saved to {path}")


@command("load", usage=":load file", help="Load a saved conversation (the current one is replaced).")
def cmd_load(app: App, args: str) -> None:
    from qwenchat.store import StoreError, load_file

    path = _user_path(args, ":load file")
    try:
        saved = load_file(path)
    except StoreError as exc:
        raise CommandError(str(exc)) from None
    app.adopt(saved)
    app.renderer.info(f"loaded {args}: {saved.conversation.exchanges()} exchanges")


@command("sessions", usage=":sessions", help="List autosaved sessions (newest first); :resume reopens one.")
def cmd_sessions(app: App, args: str) -> None:
    if app.store is None:
        raise CommandError("autosave is off in this session")
    sessions = app.store.list()
    if not sessions:
        app.renderer.hint("(no saved sessions)")
        return
    rows = [
        (str(i), s.id, s.updated[:16].replace("T", " "), s.model, s.title) for i, s in enumerate(sessions, 1)
    ]
    app.renderer.table(rows, headers=("#", "id", "updated", "model", "first message"), title="Sessions")


@command("resume", usage=":resume [N|id|last]", help="Reopen an autosaved session (see :sessions).")
def cmd_resume(app: App, args: str) -> None:
    from qwenchat.store import StoreError

    if app.store is None:
        raise CommandError("autosave is off in this session")
    try:
        saved = app.store.resolve(args or "last")
    except StoreError as exc:
        raise CommandError(str(exc)) from None
    app.adopt(saved, session_id=saved.id, created=saved.created)
    app.renderer.info(f"resumed {saved.id}: {saved.conversation.exchanges()} exchanges")


@command("export", usage=":export file.md", help="Write the conversation as readable Markdown.")
def cmd_export(app: App, args: str) -> None:
    from qwenchat.export import to_markdown
    from qwenchat.store import atomic_write_text

    path = _user_path(args, ":export file.md")
    text = to_markdown(
        app.conversation,
        model=app.engine.name,
        settings_overrides=app.settings.overrides,
        seed=app.settings.seed,
    )
    try:
        atomic_write_text(path, text)
    except OSError as exc:
        raise CommandError(f"cannot write {path}: {exc.strerror or exc}") from None
    app.renderer.info(f"exported to {path}")


@command(
    "copy",
    usage=":copy [N|code]",
    help="Copy the last (or Nth) answer, or its last code block, to the clipboard (OSC 52).",
    arg_words=lambda: ["code"],
)
def cmd_copy(app: App, args: str) -> None:
    from qwenchat.clipboard import osc52, support_note
    from qwenchat.text import last_code_block

    answers = [m.content for m in app.conversation.messages if m.role == "assistant"]
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
    app.renderer.raw(osc52(text))
    app.renderer.info(f"copied {what} ({len(text)} characters) to the clipboard")
    note = support_note()
    if note:
        app.renderer.hint(note)


@command("template", help="Show the exact prompt the model will see next (chat template applied).")
def cmd_template(app: App, args: str) -> None:
    req = app.request(extra_user="<your next message>")
    try:
        text = app.engine.render_prompt(req)
    except NotImplementedError as exc:
        raise CommandError(str(exc)) from None
    except Exception as exc:  # the template's own error, shown as one line
        raise CommandError(f"the chat template failed: {exc}") from None
    app.renderer.text(text)


@command("tokens", help="Token counts of the conversation against the model's context window.")
def cmd_tokens(app: App, args: str) -> None:
    try:
        used = app.engine.count_tokens(app.request(extra_user=""))
    except NotImplementedError as exc:
        raise CommandError(str(exc)) from None
    except Exception as exc:
        raise CommandError(f"cannot count tokens: {exc}") from None
    window = app.engine.context_window
    budget = app.settings.effective().get("max_new_tokens", 0) or 0
    if window:
        left = window - used - budget
        spare = f"{left} to spare" if left >= 0 else f"over by {-left}: the oldest exchanges will be dropped"
        app.renderer.info(
            f"{used} tokens in the conversation + {budget} max_new_tokens of a {window}-token context"
            f" ({spare})"
        )
    else:
        app.renderer.info(f"{used} tokens in the conversation (context window unknown)")
