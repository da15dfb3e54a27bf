"""The chat loop, kept small: read a line, run a command or a turn. Testable without a terminal."""

from __future__ import annotations

import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from qwenchat.commands import REGISTRY, CommandError, Registry
from qwenchat.config import Settings
from qwenchat.engine_api import Chunk, Engine, GenerationRequest, TurnStats
from qwenchat.render import Renderer
from qwenchat.session import Conversation


class App:
    """The state of one chat: conversation, settings, engine and renderer."""

    def __init__(
        self,
        engine: Engine,
        renderer: Renderer,
        *,
        conversation: Conversation | None = None,
        settings: Settings | None = None,
        registry: Registry | None = None,
        show_stats: bool = False,
    ) -> None:
        self.engine = engine
        self.renderer = renderer
        self.conversation = conversation if conversation is not None else Conversation()
        self.settings = settings if settings is not None else Settings(engine.default_settings())
        self.registry = registry or REGISTRY.copy()
        self.show_stats = show_stats
        self.last_stats: TurnStats | None = None
        self.should_exit = False

    # -- one line --------------------------------------------------------------------------
    def handle_line(self, line: str) -> None:
        """A command or a chat message; bad input gets one line and changes nothing."""
        text = line.strip()
        if not text:
            self.renderer.hint("Type a message, or :h for help.")
            return
        if text.startswith(":") and not text.startswith("::"):
            try:
                self.registry.dispatch(self, text)
            except CommandError as exc:
                self.renderer.error(str(exc))
            return
        if text.startswith("::"):  # a message that really starts with ':'
            line = line.lstrip()[1:]
        self.chat(line.strip("\n"))

    def chat(self, text: str) -> None:
        self.conversation.add_user(text)
        ok = self.run_turn()
        if not ok:
            self.conversation.messages.pop()  # nothing was answered: leave history as it was
            self.renderer.hint("Your message was not added to the history; press Up to get it back.")

    def request(self, continue_final: bool = False) -> GenerationRequest:
        return GenerationRequest(
            messages=self.conversation.to_chat(),
            settings=self.settings.effective(),
            seed=self.settings.seed,
            continue_final=continue_final,
        )

    def run_turn(self, continue_final: bool = False) -> bool:
        """Stream one answer into the renderer and the history. False when nothing could be generated."""
        cancel = threading.Event()
        view = self.renderer.answer(self.engine.name)
        stream = self.engine.stream(self.request(continue_final), cancel)
        final: Chunk | None = None
        try:
            for chunk in stream:
                view.feed(chunk.text)
                if chunk.finish_reason:
                    final = chunk
        except KeyboardInterrupt:
            cancel.set()  # the engine stops at its next decode step
            final = self._drain(stream, view)
        reason = final.finish_reason if final else "interrupted"
        if final is None and cancel.is_set():
            reason = "interrupted"
        view.end(reason or "stop", final.stats if final else None, final.error if final else None)
        if final is not None and final.stats is not None:
            self.last_stats = final.stats
            if self.show_stats:
                self.renderer.stats(final.stats)
        text = view.text
        if reason == "error" and not text:
            return False
        if continue_final and self.conversation.messages and self.conversation.messages[-1].role == "assistant":
            last = self.conversation.messages[-1]
            last.content += text
            last.interrupted = reason != "stop"
        else:
            self.conversation.add_assistant(text, interrupted=reason != "stop")
        return True

    def _drain(self, stream: Iterable[Chunk], view: Any) -> Chunk | None:
        """Collect what the engine still sends after a cancel; extra Ctrl-Cs are ignored meanwhile."""
        final = None
        while True:
            try:
                for chunk in stream:
                    view.feed(chunk.text)
                    if chunk.finish_reason:
                        final = chunk
                return final
            except KeyboardInterrupt:
                continue

    # -- the loop --------------------------------------------------------------------------
    def run_lines(self, lines: Iterable[str]) -> None:
        """Pipe mode: one message or command per line, until end of input or :q."""
        for line in lines:
            if self.should_exit:
                break
            line = line.rstrip("\r\n")
            if not line.strip():
                continue  # blank lines in a script are not worth a hint
            self.handle_line(line)

    def run_interactive(self, *, history_file: Path | None = None, input: Any = None, output: Any = None) -> None:
        from prompt_toolkit import PromptSession

        session = PromptSession(
            history=_history(history_file),
            completer=_completer(self.registry),
            complete_while_typing=False,
            input=input,
            output=output,
        )
        while not self.should_exit:
            try:
                line = session.prompt("> " if self.renderer.plain else [("class:prompt", "› ")])
            except KeyboardInterrupt:
                continue  # Ctrl-C at the prompt clears the line
            except EOFError:
                break
            self.handle_line(line)


def _history(path: Path | None) -> Any:
    from prompt_toolkit.history import FileHistory, InMemoryHistory

    if path is None:
        return InMemoryHistory()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return FileHistory(str(path))
    except OSError:
        return InMemoryHistory()


def _completer(registry: Registry) -> Any:
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
            for w in cmd.arg_words():
                if w.startswith(last):
                    yield Completion(w, start_position=-len(last))

    return CommandCompleter()
