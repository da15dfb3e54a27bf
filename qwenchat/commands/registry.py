"""One registry of colon-commands: help text and completion come from it, so they cannot drift."""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from qwenchat.errors import UserError
from qwenchat.settings import COMMON, ConfigError

if TYPE_CHECKING:
    from qwenchat.ui.repl import App

Handler = Callable[["App", str], None]


class CommandError(UserError):
    """Bad arguments: one line to the user, and the command changed nothing."""


@dataclass(frozen=True)
class Command:
    name: str
    aliases: tuple[str, ...]
    usage: str
    help: str
    handler: Handler
    # Words offered by tab completion after the command name.
    arg_words: Callable[[], list[str]] = field(default=lambda: [])

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
        arg_words: Callable[[], list[str]] | None = None,
    ) -> Callable[[Handler], Handler]:
        def deco(fn: Handler) -> Handler:
            cmd = Command(name, aliases, usage or f":{name}", help, fn, arg_words or (lambda: []))
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

    def __iter__(self):
        return iter(self._order)

    def find(self, word: str) -> Command | None:
        return self._by_name.get(word)

    def words(self) -> list[str]:
        return sorted(self._by_name)

    def suggest(self, word: str) -> list[str]:
        return difflib.get_close_matches(word, self.words(), n=3, cutoff=0.6)

    def dispatch(self, app: App, line: str) -> None:
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
        cmd.handler(app, args.strip())


REGISTRY = Registry()
command = REGISTRY.command


def _on_off(value: str, what: str, current: bool) -> bool:
    v = value.strip().lower()
    if not v:
        return not current
    if v in ("on", "yes", "true", "1"):
        return True
    if v in ("off", "no", "false", "0"):
        return False
    raise CommandError(f"{what} takes on or off, got {value!r}")


def _no_args(args: str, name: str) -> None:
    if args:
        raise CommandError(f":{name} takes no arguments")


@command(
    "help",
    "h",
    usage=":help [command]",
    help="Show the commands, or one command's help.",
    arg_words=lambda: REGISTRY.words(),
)
def cmd_help(app: App, args: str) -> None:
    if args:
        cmd = app.registry.find(args.lstrip(":").lower())
        if cmd is None:
            raise CommandError(f"no command :{args.lstrip(':')}")
        aliases = ", ".join(":" + a for a in cmd.aliases)
        app.renderer.table([(cmd.usage, cmd.help + (f" (also {aliases})" if aliases else ""))])
        return
    rows = []
    for cmd in app.registry:
        aliases = " ".join(":" + a for a in cmd.aliases)
        rows.append((cmd.usage + (f"  ({aliases})" if aliases else ""), cmd.help))
    app.renderer.table(rows, headers=("command", "what it does"), title="Commands")
    app.renderer.hint(
        "Type a message to chat. Ctrl-C stops an answer (kept, marked interrupted); Ctrl-D or :q quits."
    )


@command("exit", "quit", "q", help="Leave qwenchat.")
def cmd_exit(app: App, args: str) -> None:
    app.should_exit = True


@command("clear", "cl", help="Clear the screen (the history stays).")
def cmd_clear(app: App, args: str) -> None:
    _no_args(args, "clear")
    app.renderer.clear_screen()


@command("clear-history", "clh", help="Forget the conversation so far (the system prompt stays).")
def cmd_clear_history(app: App, args: str) -> None:
    _no_args(args, "clear-history")
    app.conversation.clear()
    app.engine.reset()
    app.renderer.info("History cleared.")


@command("history", "his", help="Show the conversation so far.")
def cmd_history(app: App, args: str) -> None:
    _no_args(args, "history")
    app.renderer.history(app.conversation.messages, app.conversation.system)


@command("seed", usage=":seed [N]", help="Show the random seed, or set it (applied before every turn).")
def cmd_seed(app: App, args: str) -> None:
    if args:
        try:
            app.settings.set_seed(args)
        except ConfigError as exc:
            raise CommandError(str(exc)) from None
    app.renderer.info(f"seed: {app.settings.seed}")


@command(
    "conf",
    usage=":conf [key=value ...|all]",
    help="Show the generation settings that differ from the model's, all of them, or set some.",
    arg_words=lambda: sorted(COMMON),  # the engine's own words: app.settings.words() (needs the app)
)
def cmd_conf(app: App, args: str) -> None:
    s = app.settings
    if args and args != "all":
        try:
            applied = s.apply(args)
        except ConfigError as exc:
            raise CommandError(str(exc)) from None
        app.renderer.info("set " + ", ".join(f"{k}={v!r}" for k, v in applied.items()))
        return
    if args == "all":
        values = s.all_values()
        rows = [(k, repr(v), "*" if k in s.overrides else "") for k, v in sorted(values.items())]
        app.renderer.table(rows, headers=("setting", "value", "changed"), title="All generation settings")
        return
    rows = [
        (k, repr(v), "you" if k in s.overrides else s.sources.get(k, "model"))
        for k, v in sorted(s.effective().items())
    ]
    app.renderer.table(rows, headers=("setting", "value", "from"), title="Generation settings")
    changed = s.changed()
    app.renderer.hint(
        (f"changed by you: {', '.join(changed)}. " if changed else "")
        + ":conf all lists every setting; :conf key=value sets; :reset-conf restores."
    )


@command("reset-conf", help="Restore the model's generation settings and the starting seed.")
def cmd_reset_conf(app: App, args: str) -> None:
    _no_args(args, "reset-conf")
    app.settings.reset()
    app.renderer.info("Generation settings and seed restored.")


@command(
    "stats",
    usage=":stats [on|off]",
    help="Print speed and cache figures after every answer.",
    arg_words=lambda: ["on", "off"],
)
def cmd_stats(app: App, args: str) -> None:
    app.show_stats = _on_off(args, ":stats", app.show_stats)
    app.renderer.info(f"stats: {'on' if app.show_stats else 'off'}")
    if app.show_stats and app.last_stats is not None:
        app.renderer.stats(app.last_stats)


@command(
    "markdown",
    "raw",
    usage=":markdown [on|off]",
    help="Render answers as markdown, or as raw text.",
    arg_words=lambda: ["on", "off"],
)
def cmd_markdown(app: App, args: str) -> None:
    app.renderer.markdown = _on_off(args, ":markdown", app.renderer.markdown)
    app.renderer.info(f"markdown: {'on' if app.renderer.markdown else 'off'}")


THINK_MODES = ("show", "fold", "hide")


@command(
    "think",
    usage=":think [show|fold|hide]",
    help="How <think> reasoning is shown: streamed and kept, folded to one line, or hidden.",
    arg_words=lambda: list(THINK_MODES),
)
def cmd_think(app: App, args: str) -> None:
    if args:
        if args.lower() not in THINK_MODES:
            raise CommandError(f":think takes one of {', '.join(THINK_MODES)}, got {args!r}")
        app.renderer.think = args.lower()
    app.renderer.info(f"think: {app.renderer.think}")
