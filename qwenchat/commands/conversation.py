"""Commands for trying a prompt again and looking at it: system, retry, undo, edit, continue, copy, template,
tokens (keeping it, :save and :export, lives in sessions.py).

They change the conversation only through ChatSession's methods, each of which is all-or-nothing.
"""

from __future__ import annotations

import random
from typing import Any

from qwenchat.commands.reasoning import template_notes
from qwenchat.commands.registry import CommandContext, CommandError, command
from qwenchat.conversation.model import DEFAULT_SYSTEM
from qwenchat.errors import first_line
from qwenchat.text.fences import one_line
from qwenchat.text.numbers import parse_index


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
    help="Show the exact prompt the model will see next (template applied; pending :read, :prefill in it).",
    example=":template",
)
def cmd_template(ctx: CommandContext, args: str) -> None:
    s = ctx.session
    try:
        text = s.engine.render_prompt(s.next_request("<your next message>"))
    except NotImplementedError as exc:  # a remote engine: the server applies the template
        raise CommandError(first_line(exc)) from None
    except Exception as exc:  # the template's own error, shown as one line
        raise CommandError(f"the chat template failed: {first_line(exc)}") from None
    ctx.renderer.text(text)
    for note in [*pending_notes(s), *template_notes(s)]:  # what the prompt above carries, and why
        ctx.renderer.hint(note)


def pending_notes(session: Any) -> list[str]:
    """What the next message carries besides its text, as :template shows it above."""
    notes = []
    if session.attachments:
        names = ", ".join(a.name for a in session.attachments)
        notes.append(f"pending :read: {names} (before your next message, as shown)")
    if session.prefill:
        notes.append(f"pending :prefill: the answer starts with {one_line(session.prefill, 60)!r}")
    return notes


@command(
    "tokens",
    help="Token counts of the conversation against the model's context window.",
    example=":tokens",
)
def cmd_tokens(ctx: CommandContext, args: str) -> None:
    s = ctx.session
    try:
        used = s.engine.count_tokens(s.request(extra_user="", extra_images=tuple(s.images)))
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
    from qwenchat.chat.images import image_token_line

    if line := image_token_line(s):
        ctx.renderer.info(line)
