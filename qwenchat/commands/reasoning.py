""":reasoning: the enable_thinking switch and the thinking budget (reasoning.py has the why)."""

from __future__ import annotations

from typing import Any

from qwenchat.commands.registry import CommandContext, CommandError, command
from qwenchat.engines.api import Engine, SupportsThinkingBudget
from qwenchat.reasoning import MODES, SWITCH, ReasoningError, parse_budget, parse_mode


def supports_budget(engine: Engine) -> bool:
    """In-process engines force the closing tag; a server's API has no such field."""
    return isinstance(engine, SupportsThinkingBudget) and engine.supports_thinking_budget


def template_notes(session: Any) -> list[str]:
    """What :template adds under the prompt: the switch's effect (or its absence), the tools it carries."""
    notes = []
    r = session.reasoning
    variables = session.template_variables()
    if r.mode != "auto":
        if variables is not None and SWITCH not in variables:
            notes.append(f"reasoning {r.mode}: this chat template has no enable_thinking switch; not applied")
        else:
            notes.append(f"reasoning {r.mode}: enable_thinking={r.mode == 'on'} passed to the chat template")
    if session.toolbox.definitions:
        notes.append(f"tools: {', '.join(session.toolbox.names)} (from {session.toolbox.source})")
    return notes


def set_mode(session: Any, value: str) -> str | None:
    """Set the switch; returns the one line to show when the template has no switch (it changes nothing)."""
    session.reasoning.mode = parse_mode(value)
    variables = session.template_variables()
    if session.reasoning.mode != "auto" and variables is not None and SWITCH not in variables:
        return (
            f"this model's chat template has no reasoning switch (no {SWITCH} variable): "
            f"reasoning {session.reasoning.mode} changes nothing"
        )
    return None


def set_budget(session: Any, value: str | int | None) -> None:
    budget = parse_budget(value)
    if budget is not None and not supports_budget(session.engine):
        raise ReasoningError("a reasoning budget needs an in-process model (transformers or llama.cpp)")
    session.reasoning.budget = budget


@command(
    "reasoning",
    usage=":reasoning [on|off|auto|budget N|budget off]",
    help="Show or set reasoning: on/off is passed to the chat template as enable_thinking (auto: the "
    "template's default); budget N closes the think block after N tokens.",
    arg_words=lambda ctx: [*MODES, "budget"],
    example=":reasoning budget 256",
)
def cmd_reasoning(ctx: CommandContext, args: str) -> None:
    s = ctx.session
    word, _, rest = args.partition(" ")
    try:
        if word.lower() == "budget":
            if not rest.strip():
                raise CommandError(":reasoning budget takes a number of tokens or off")
            set_budget(s, rest)
        elif word:
            line = set_mode(s, word)
            if line:  # it says what the status line would: one line is enough
                ctx.renderer.notice(line)
                return
    except ReasoningError as exc:
        raise CommandError(str(exc)) from None
    ctx.renderer.info(s.reasoning.describe(s.template_variables()))
