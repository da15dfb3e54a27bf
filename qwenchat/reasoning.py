"""The reasoning switch and budget, engine-neutral (no torch).

* The switch: Qwen3's chat templates read `enable_thinking` (false: an empty think block is written into the
  prompt, so the model answers at once). Whether a template reads it is found by parsing its Jinja source
  (`jinja2.meta.find_undeclared_variables`), so a template without the switch gets one line saying so
  instead of a variable it silently ignores. `auto` passes nothing: the template's default.
* The budget: Qwen's documented two-step way, done inside one turn. Once N tokens of thinking are generated
  and the block is still open, the engine feeds the closing text (`CLOSE_TEXT`) as the next tokens and the
  model goes on with the answer: one stream, so Ctrl-C, stats and the kept cache work as in any turn.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from qwenchat.errors import UserError
from qwenchat.text.think import CLOSE, OPEN

MODES = ("on", "off", "auto")
SWITCH = "enable_thinking"
# What the engine appends when the budget runs out (as Qwen's model cards do: close the block, go on).
CLOSE_TEXT = "\n\nConsidering the limited time, I have to give the answer now.\n" + CLOSE + "\n\n"


class ReasoningError(UserError):
    """A bad :reasoning argument or flag."""


def template_variables(source: str | dict[str, str] | None) -> set[str] | None:
    """The variables a Jinja chat template reads without setting them; None when there is no template or
    it does not parse (the engine reports that itself when it renders)."""
    if not source:
        return None
    if isinstance(source, dict):  # several named templates: the default one is what chats use
        source = source.get("default") or next(iter(source.values()), "")
    import jinja2
    import jinja2.meta

    try:
        env = jinja2.Environment(extensions=["jinja2.ext.loopcontrols"])
        return set(jinja2.meta.find_undeclared_variables(env.parse(source)))
    except jinja2.TemplateError:
        return None


def parse_mode(value: str) -> str:
    v = value.strip().lower()
    if v not in MODES:
        raise ReasoningError(f"reasoning takes on, off or auto, got {value!r}")
    return v


def parse_budget(value: str | int | None) -> int | None:
    """A thinking budget: a positive number of tokens, or off/none/0 for no budget."""
    if value is None:
        return None
    v = str(value).strip().lower()
    if v in ("off", "none", "0", ""):
        return None
    try:
        n = int(v.replace("_", ""))
    except ValueError:
        raise ReasoningError(f"a reasoning budget is a number of tokens or off, got {value!r}") from None
    if n < 0:
        raise ReasoningError(f"a reasoning budget must be positive, got {n}")
    return n


@dataclass
class Reasoning:
    """The session's reasoning choices; `template_kwargs` is what a request passes to the chat template."""

    mode: str = "auto"
    budget: int | None = None

    def template_kwargs(self, variables: set[str] | None) -> dict[str, Any]:
        """enable_thinking for a template that reads it (or one whose variables are unknown: a server,
        which ignores what its template does not read)."""
        if self.mode == "auto" or (variables is not None and SWITCH not in variables):
            return {}
        return {SWITCH: self.mode == "on"}

    def describe(self, variables: set[str] | None) -> str:
        budget = f"budget {self.budget} tokens" if self.budget else "no budget"
        return f"reasoning {self.mode} · {budget} · {switch_line(variables)}"


def switch_line(variables: set[str] | None) -> str:
    if variables is None:
        return "the server's template decides (sent as chat_template_kwargs.enable_thinking)"
    if SWITCH in variables:
        return "this model's chat template has the enable_thinking switch"
    return "this model's chat template has no reasoning switch (enable_thinking): on/off change nothing"


class BudgetTracker:
    """Counts thinking tokens as they are generated and says when to close the block.

    `step(text)` takes the text of each generated token (forced ones included) and returns True when the
    budget is spent with the block still open: the engine then forces CLOSE_TEXT's tokens. A budget of 0
    closes the block as soon as it opens."""

    def __init__(self, budget: int | None, think_open: bool | None) -> None:
        self.budget = budget
        self.inside = bool(think_open)
        self.closed = False
        self.thinking = 0  # generated tokens inside the block (its tags and any forced close included)
        self.answer = 0
        self.forcing = False
        self._text = ""

    def step(self, piece: str) -> bool:
        was_inside = self.inside
        self._text = (self._text + piece)[-64:]  # enough to see a tag split over tokens
        if not self.inside and not self.closed and OPEN in self._text:
            self.inside, self._text = True, self._text[self._text.index(OPEN) + len(OPEN) :]
        if was_inside or self.inside:
            self.thinking += 1
        else:
            self.answer += 1
        if self.inside and CLOSE in self._text:
            self.inside, self.closed, self.forcing = False, True, False
            self._text = ""
        if self.inside and not self.forcing and self.budget is not None:
            if self.thinking >= self.budget:
                self.forcing = True
                return True
        return False
