"""The chat loop, kept small: read a line, run a command or a turn. Testable without a terminal."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from qwenchat.commands import REGISTRY, CommandError, Registry
from qwenchat.engines.api import Chunk, Engine, GenerationRequest, TurnStats
from qwenchat.session import Conversation
from qwenchat.settings import Settings
from qwenchat.store import SessionStore, now_stamp
from qwenchat.ui.render import Renderer


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
        store: SessionStore | None = None,
        overflow: str = "drop-oldest",
    ) -> None:
        self.engine = engine
        self.renderer = renderer
        self.conversation = conversation if conversation is not None else Conversation()
        self.settings = (
            settings
            if settings is not None
            else Settings(engine.default_settings(), schema=engine.settings_schema())
        )
        self.registry = registry or REGISTRY.copy()
        self.show_stats = show_stats
        self.last_stats: TurnStats | None = None
        self.should_exit = False
        self.overflow = overflow  # what to do when the conversation outgrows the context window
        self.model_id = engine.name
        self.store = store  # a SessionStore for autosave, or None
        self.session_id = SessionStore.new_id()
        self.created = now_stamp()
        self._saved_state: Any = None

    # -- session bookkeeping ---------------------------------------------------------------
    def session_fields(self) -> dict[str, Any]:
        return {
            "conversation": self.conversation,
            "model": self.model_id,
            "settings_overrides": dict(self.settings.overrides),
            "seed": self.settings.seed,
            "session_id": self.session_id,
            "created": self.created,
        }

    def autosave(self) -> None:
        """Write the session after every change, atomically; a failure is a notice, never a crash."""
        if self.store is None or not self.conversation.messages:
            return
        state = (self.conversation.to_dict(), dict(self.settings.overrides), self.settings.seed)
        if state == self._saved_state:
            return
        fields = self.session_fields()
        fields.pop("session_id")
        try:
            self.store.autosave(self.session_id, **fields)
            self._saved_state = state
        except Exception as exc:  # disk full, permissions: the chat goes on
            self.renderer.notice(f"autosave failed: {exc}")

    def adopt(self, saved: Any, *, session_id: str | None = None, created: str | None = None) -> None:
        """Take over a loaded session: conversation, settings and seed; the engine re-matches its cache."""
        import copy

        from qwenchat.settings import ConfigError

        settings = copy.copy(self.settings)
        settings.seed = saved.seed
        try:
            dropped = settings.adopt(saved.settings)
        except ConfigError as exc:
            raise CommandError(f"the saved settings do not apply to this model: {exc}") from None
        if dropped:
            self.renderer.notice(settings.schema.dropped_notice(dropped, "the saved session"))
        self.conversation = saved.conversation
        self.settings = settings
        if session_id:
            self.session_id = session_id
            self.created = created or self.created
        if saved.model and saved.model != self.model_id:
            self.renderer.notice(
                f"this session was saved with {saved.model}; continuing with {self.model_id}"
            )

    def check_template(self) -> None:
        """Raise CommandError when the chat template rejects the conversation (e.g. no system role)."""
        try:
            self.engine.render_prompt(self.request(extra_user="x"))
        except NotImplementedError:  # a remote engine: the server applies the template
            return
        except Exception as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise CommandError(f"this model's chat template rejects that: {first}") from None

    def warn_ignored_settings(self) -> None:
        """Config-file settings the engine cannot honour were dropped: one notice says which."""
        if self.settings.dropped:
            self.renderer.notice(
                self.settings.schema.dropped_notice(self.settings.dropped, "the config file")
            )

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
            except Exception as exc:  # a bug in a command must not end the session or show a traceback
                self.renderer.error(f"internal error in {text.split()[0]}: {type(exc).__name__}: {exc}")
            self.autosave()
            return
        if text.startswith("::"):  # a message that really starts with ':'
            line = line.lstrip()[1:]
        self.chat(line.strip("\n"))
        self.autosave()

    def chat(self, text: str) -> None:
        self.conversation.add_user(text)
        ok = self.run_turn()
        if not ok:
            self.conversation.messages.pop()  # nothing was answered: leave history as it was
            self.renderer.hint("Your message was not added to the history; press Up to get it back.")

    def request(self, continue_final: bool = False, extra_user: str | None = None) -> GenerationRequest:
        messages = self.conversation.to_chat()
        if extra_user is not None:
            messages.append({"role": "user", "content": extra_user})
        return GenerationRequest(
            messages=messages,
            settings=self.settings.effective(),
            seed=self.settings.seed,
            continue_final=continue_final,
        )

    def fit_context(self, request: GenerationRequest) -> GenerationRequest | None:
        """Never truncate silently: drop the oldest exchanges with a notice, or refuse (--overflow error)."""
        window = self.engine.context_window
        if not window:
            return request
        budget = request.settings.get("max_new_tokens") or 0
        try:
            used = self.engine.count_tokens(request)
        except Exception:
            return request  # the template's error surfaces from the engine itself
        if used + budget <= window:
            return request
        if self.overflow == "error":
            self.renderer.error(
                f"the conversation ({used} tokens) + max_new_tokens ({budget}) exceeds the {window}-token "
                "context; :undo, :clh or a smaller max_new_tokens"
            )
            return None
        msgs = list(request.messages)
        head = 1 if msgs and msgs[0]["role"] == "system" else 0
        dropped = 0
        while used + budget > window:
            # the oldest exchange: a user message and the answers up to the next user message
            end = head + 1
            while end < len(msgs) and msgs[end]["role"] != "user":
                end += 1
            if end >= len(msgs):  # only the current message is left
                self.renderer.error(
                    f"your message alone ({used} tokens) + max_new_tokens ({budget}) exceeds the "
                    f"{window}-token context; shorten it or lower max_new_tokens"
                )
                return None
            del msgs[head:end]
            dropped += 1
            request = GenerationRequest(msgs, request.settings, request.seed, request.continue_final)
            used = self.engine.count_tokens(request)
        self.renderer.notice(
            f"context full: the oldest {dropped} exchange{'s' if dropped > 1 else ''} not sent this turn "
            "(still in :his; --overflow error refuses instead)"
        )
        return request

    def run_turn(self, continue_final: bool = False) -> bool:
        """Stream one answer into the renderer and the history. False when nothing could be generated."""
        cancel = threading.Event()
        request = self.fit_context(self.request(continue_final))
        if request is None:
            return False
        stream = self.engine.stream(request, cancel)
        view: Any = None
        final: Chunk | None = None
        prime = self._continuation_prime() if continue_final else ""

        def take(chunk: Chunk) -> None:
            nonlocal view, final
            if view is None:  # opened on the first chunk, which may say whether a think block is open
                view = self.renderer.answer(self.engine.name, think_open=chunk.think_open)
                view.feed(prime)
            view.feed(chunk.text)
            if chunk.finish_reason:
                final = chunk

        try:
            for chunk in stream:
                take(chunk)
        except KeyboardInterrupt:
            cancel.set()  # the engine stops at its next decode step
            self._drain(stream, take)
        if view is None:
            view = self.renderer.answer(self.engine.name)
            view.feed(prime)
        reason = (final.finish_reason if final is not None else None) or "interrupted"
        view.end(reason, final.stats if final else None, final.error if final else None)
        if final is not None and final.stats is not None:
            self.last_stats = final.stats
            if self.show_stats:
                self.renderer.stats(final.stats)
        text = view.text[len(prime) :]
        if reason == "error" and not text:
            return False
        if (
            continue_final
            and self.conversation.messages
            and self.conversation.messages[-1].role == "assistant"
        ):
            last = self.conversation.messages[-1]
            last.content += text
            last.interrupted = reason != "stop"
        else:
            self.conversation.add_assistant(text, interrupted=reason != "stop")
        return True

    def _continuation_prime(self) -> str:
        """An answer cut inside a code fence goes on inside it: reopen the fence for the renderer only."""
        from qwenchat.export import open_fence

        if self.renderer.plain or not self.renderer.markdown or not self.conversation.messages:
            return ""
        fence = open_fence(self.conversation.messages[-1].content)
        return fence + "\n" if fence else ""

    def _drain(self, stream: Iterable[Chunk], take: Callable[[Chunk], None]) -> None:
        """Collect what the engine still sends after a cancel; extra Ctrl-Cs are ignored meanwhile."""
        while True:
            try:
                for chunk in stream:
                    take(chunk)
                return
            except KeyboardInterrupt:
                continue

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
            completer=_completer(self.registry),
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
