"""One registry of colon-commands: help text and completion come from it, so they cannot drift.

Handlers take a `CommandContext` (the session, the renderer, the registry, a way to leave) and the argument
text. Registration works as in pgspecial: modules register into `REGISTRY` when imported, and each REPL runs
its own `REGISTRY.copy()`, so a test or an embedder can add commands without touching the global one.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from qwenchat.errors import UserError

if TYPE_CHECKING:
    from qwenchat.chat.session import ChatSession
    from qwenchat.ui.render import Renderer


class CommandContext(Protocol):
    """All a command may reach: the chat session, the renderer (the only printer) and the registry."""

    session: ChatSession
    renderer: Renderer
    registry: Registry
    show_stats: bool  # print TurnStats after every answer
    switch_model: Callable[[str], None] | None  # `:model SPEC`; None where no model can be loaded

    def request_exit(self) -> None:
        """Leave the loop after this command."""
        ...


Handler = Callable[[CommandContext, str], None]


class CommandError(UserError):
    """Bad arguments: one line to the user, and the command changed nothing."""


@dataclass(frozen=True)
class Command:
    name: str
    aliases: tuple[str, ...]
    usage: str
    help: str
    handler: Handler
    # Words offered by tab completion after the command name (they may depend on the engine).
    arg_words: Callable[[CommandContext], list[str]] = field(default=lambda ctx: [])
    example: str = ""  # one typical use, shown by `:help name`

    @property
    def words(self) -> list[str]:
        return [self.name, *self.aliases]


class Registry:
    def __init__(self) -> None:
        self._by_name: dict[str, Command] = {}
        self._order: list[Command] = []

    def command(
        self,
        name: str,
        *aliases: str,
        usage: str = "",
        help: str,
        arg_words: Callable[[CommandContext], list[str]] | None = None,
        example: str = "",
    ) -> Callable[[Handler], Handler]:
        def deco(fn: Handler) -> Handler:
            words = arg_words or (lambda ctx: [])
            cmd = Command(name, aliases, usage or f":{name}", help, fn, words, example)
            for word in cmd.words:
                if word in self._by_name:
                    raise ValueError(f"command word {word!r} registered twice")
                self._by_name[word] = cmd
            self._order.append(cmd)
            return fn

        return deco

    def copy(self) -> Registry:
        """Tests and embedders get their own registry to extend without touching the global one."""
        new = Registry()
        new._by_name = dict(self._by_name)
        new._order = list(self._order)
        return new

    def __iter__(self) -> Iterator[Command]:
        return iter(self._order)

    def find(self, word: str) -> Command | None:
        return self._by_name.get(word)

    def words(self) -> list[str]:
        return sorted(self._by_name)

    def suggest(self, word: str) -> list[str]:
        return difflib.get_close_matches(word, self.words(), n=3, cutoff=0.6)

    def dispatch(self, ctx: CommandContext, line: str) -> None:
        """Run `:name args`; unknown names and bad arguments are CommandError."""
        body = line.strip()[1:]
        word, _, args = body.partition(" ")
        word = word.strip().lower()
        if not word:
            raise CommandError("a command name must follow ':'; type :h for the list")
        cmd = self.find(word)
        if cmd is None:
            close = self.suggest(word)
            hint = (
                f"; did you mean {', '.join(':' + c for c in close)}?" if close else "; type :h for the list"
            )
            raise CommandError(f"unknown command :{word}{hint}")
        cmd.handler(ctx, args.strip())


REGISTRY = Registry()
command = REGISTRY.command


def on_off(value: str, what: str, current: bool) -> bool:
    """`on`/`off` (and yes/no, true/false, 1/0); no value keeps `current` (the command shows it): a command
    without an argument shows its state, it never toggles."""
    v = value.strip().lower()
    if not v:
        return current
    if v in ("on", "yes", "true", "1"):
        return True
    if v in ("off", "no", "false", "0"):
        return False
    raise CommandError(f"{what} takes on or off, got {value!r}")


def no_args(args: str, name: str) -> None:
    if args:
        raise CommandError(f":{name} takes no arguments")
