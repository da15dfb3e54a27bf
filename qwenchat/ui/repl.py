"""The terminal side of a chat: read a line (prompt-toolkit, or a pipe), run a command or send a message.

`Repl` is what commands see (the `CommandContext`) and what the session reports a turn to (the
`ChatObserver`); the turn itself, the history and the context-window policy live in `ChatSession`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from qwenchat.chat import AnswerSink, ChatSession, TurnResult
from qwenchat.commands import REGISTRY, Registry
from qwenchat.commands.registry import CommandContext
from qwenchat.errors import UserError, first_line
from qwenchat.ui.render import Renderer

NOT_ADDED = "Your message was not added to the history; press Up to get it back."


class Repl:
    """One chat in a terminal: the session, the renderer that shows it, and the commands."""

    def __init__(
        self,
        session: ChatSession,
        renderer: Renderer,
        *,
        registry: Registry | None = None,
        show_stats: bool = False,
    ) -> None:
        self.session = session
        self.renderer = renderer
        self.registry = registry or REGISTRY.copy()
        self.show_stats = show_stats
        self.should_exit = False
        session.observer = self  # the session's turns and notices are shown here

    def request_exit(self) -> None:
        self.should_exit = True

    # -- one line --------------------------------------------------------------------------
    def handle_line(self, line: str) -> None:
        """A command or a chat message; bad input gets one line and changes nothing."""
        text = line.strip()
        if not text:
            self.renderer.hint("Type a message, or :h for help.")
            return
        is_command = text.startswith(":") and not text.startswith("::")
        try:
            if is_command:
                self.registry.dispatch(self, text)
            else:
                if text.startswith("::"):  # a message that really starts with ':'
                    line = line.lstrip()[1:]
                if not self.session.send(line.strip("\n")).kept:
                    self.renderer.hint(NOT_ADDED)
        except UserError as exc:  # the one place a user error becomes its line
            self.renderer.error(first_line(exc))
            if not is_command:
                self.renderer.hint(NOT_ADDED)
        except Exception as exc:  # a bug in a command must not end the session or show a traceback
            if not is_command:
                raise
            detail = f": {first_line(exc)}" if str(exc).strip() else ""
            self.renderer.error(f"internal error in {text.split()[0]}: {type(exc).__name__}{detail}")
        self.session.autosave()

    # -- the session's observer --------------------------------------------------------------
    def answer(self, *, think_open: bool | None, continues: str | None) -> AnswerSink:
        view = self.renderer.answer(self.session.engine.name, think_open=think_open)
        if continues is not None:
            view.feed(self._continuation_prime(continues))
        return view

    def turn_done(self, result: TurnResult) -> None:
        if result.stats is not None and self.show_stats:
            self.renderer.stats(result.stats)

    def notice(self, text: str) -> None:
        self.renderer.notice(text)

    def _continuation_prime(self, answer: str) -> str:
        """An answer cut inside a code fence goes on inside it: reopen the fence for the renderer only."""
        from qwenchat.text import reopening_fence

        if self.renderer.plain or not self.renderer.markdown:
            return ""
        fence = reopening_fence(answer)
        return fence + "\n" if fence else ""

    # -- the loop --------------------------------------------------------------------------
    def run_lines(self, lines: Iterable[str]) -> None:
        """Pipe mode: a message or command per line, to end of input or :q; triple-quote blocks span lines."""
        it = iter(lines)
        for line in it:
            if self.should_exit:
                break
            line = line.rstrip("\r\n")
            if not line.strip():
                continue  # blank lines in a script are not worth a hint
            if line.strip().startswith(MULTILINE):
                line = _read_block(line, (x.rstrip("\r\n") for x in it))
            self.handle_line(line)

    def run_interactive(
        self, *, history_file: Path | None = None, input: Any = None, output: Any = None
    ) -> None:
        from prompt_toolkit import PromptSession

        session = PromptSession(
            history=_history(history_file),
            completer=_completer(self.registry, self),
            complete_while_typing=False,
            key_bindings=_key_bindings(),
            enable_open_in_editor=True,  # Ctrl-X Ctrl-E edits the input in $EDITOR
            input=input,
            output=output,
        )

        def ask(prompt: str) -> str:
            return session.prompt(prompt if self.renderer.plain else [("class:prompt", prompt)])

        while not self.should_exit:
            try:
                line = ask("› ")
                if line.strip().startswith(MULTILINE):
                    line = _read_block(line, _prompts(ask, "… "))
            except KeyboardInterrupt:
                continue  # Ctrl-C at the prompt clears the line
            except EOFError:
                break
            self.handle_line(line)


MULTILINE = '"""'


def _prompts(ask: Any, prompt: str) -> Iterator[str]:
    while True:
        yield ask(prompt)


def _read_block(first: str, more: Iterator[str]) -> str:
    """A message between triple-quote marks: the opening line may carry text, the closing mark ends a line."""
    body = first.strip()[len(MULTILINE) :]
    if body.rstrip().endswith(MULTILINE) and body.strip():
        return body.rstrip()[: -len(MULTILINE)]
    lines = [body] if body else []
    for line in more:
        if line.rstrip().endswith(MULTILINE):
            lines.append(line.rstrip()[: -len(MULTILINE)])
            break
        lines.append(line)
    return "\n".join(lines).strip("\n")


def _key_bindings() -> Any:
    from prompt_toolkit.key_binding import KeyBindings

    kb = KeyBindings()

    @kb.add("escape", "enter")  # Alt-Enter, or Esc then Enter: a newline instead of sending
    def _newline(event: Any) -> None:
        event.current_buffer.insert_text("\n")

    return kb


def _history(path: Path | None) -> Any:
    from prompt_toolkit.history import FileHistory, InMemoryHistory

    if path is None:
        return InMemoryHistory()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return FileHistory(str(path))
    except OSError:
        return InMemoryHistory()


def _completer(registry: Registry, ctx: CommandContext) -> Any:
    from prompt_toolkit.completion import Completer, Completion

    class CommandCompleter(Completer):
        """Completes command names after ':' and each command's argument words after it."""

        def get_completions(self, document, complete_event):  # noqa: ANN001
            text = document.text_before_cursor
            if not text.startswith(":"):
                return
            if " " not in text:
                word = text[1:].lower()
                for name in registry.words():
                    if name.startswith(word):
                        yield Completion(":" + name, start_position=-len(text))
                return
            name, _, rest = text[1:].partition(" ")
            cmd = registry.find(name.lower())
            if cmd is None:
                return
            last = rest.split(" ")[-1]
            for w in cmd.arg_words(ctx):
                if w.startswith(last):
                    yield Completion(w, start_position=-len(last))

    return CommandCompleter()
