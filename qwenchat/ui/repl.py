"""The terminal side of a chat: read a line (prompt-toolkit, or a pipe), run a command or send a message.

`Repl` is what commands see (the `CommandContext`) and what the session reports a turn to (the
`ChatObserver`); the turn itself, the history and the context-window policy live in `ChatSession`.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from qwenchat.chat.images import takes_images
from qwenchat.chat.observer import AnswerSink, TurnResult
from qwenchat.chat.session import ChatSession
from qwenchat.commands import REGISTRY, Registry
from qwenchat.commands.registry import CommandContext
from qwenchat.errors import UserError, first_line
from qwenchat.images.load import looks_like_image_path
from qwenchat.tools.calls import pending_calls
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
        switch_model: Callable[[str], None] | None = None,
    ) -> None:
        self.session = session
        self.renderer = renderer
        self.registry = registry or REGISTRY.copy()
        self.show_stats = show_stats
        self.should_exit = False
        self.failed = False  # a command or a turn failed: a pipe run ends with a non-zero status
        self._cap_told = False  # the input-limit notice was shown at this prompt
        self.interrupted = False  # Ctrl-C came: a pipe run stops after the line it was running
        self.switch_model = switch_model  # `:model SPEC` (the CLI's model loader); None: not offered
        self.ask: Callable[[str], str] | None = None  # a question at the prompt (interactive only)
        session.observer = self  # the session's turns and notices are shown here

    def request_exit(self) -> None:
        self.should_exit = True

    # -- one line --------------------------------------------------------------------------
    def handle_line(self, line: str) -> None:
        """A command or a chat message; bad input gets one line and changes nothing. Ctrl-C meanwhile
        stops the answer and nothing else: the turn, its history entry and the autosave always complete."""
        with self._ctrl_c_stops_the_turn():
            self._handle_line(line)

    def _handle_line(self, line: str) -> None:
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
                elif looks_like_image_path(text) and takes_images(self.session.engine):
                    self._offer_image(text)  # a pasted or dropped image: offered, never sent silently
                    return
                if not self.session.send(line.strip("\n")).kept:
                    self.renderer.hint(NOT_ADDED)
        except UserError as exc:  # the one place a user error becomes its line
            self.failed = True
            self.renderer.error(_short(first_line(exc)))
            if not is_command:
                self.renderer.hint(NOT_ADDED)
        except Exception as exc:  # a bug in a command must not end the session or show a traceback
            if not is_command:
                raise
            self.failed = True
            detail = f": {first_line(exc)}" if str(exc).strip() else ""
            self.renderer.error(_short(f"internal error in {text.split()[0]}: {type(exc).__name__}{detail}"))
        self.session.autosave()

    def _offer_image(self, text: str) -> None:
        """A message that is only an image file's path: asked whether to attach it (interactive), else told
        how; either way nothing is sent."""
        if self.ask is None:
            self.renderer.notice(image_offer(text))
            return
        try:
            reply = self.ask("that is an image file: attach it to your next message? [y/N] ")
        except (KeyboardInterrupt, EOFError):
            reply = ""
        if reply.strip().lower() not in ("y", "yes"):
            self.renderer.hint("not attached; nothing was sent")
            return
        from qwenchat.commands.image import attach_images

        attach_images(self.session, self.renderer, [text.strip().strip("'\"")])

    # -- the session's observer --------------------------------------------------------------
    def answer(self, *, think_open: bool | None, continues: str | None) -> AnswerSink:
        view = self.renderer.answer(self.session.engine.name, think_open=think_open)
        if continues is not None:
            view.feed(self._continuation_prime(continues))
        return view

    def turn_done(self, result: TurnResult) -> None:
        if result.finish_reason == "error":
            self.failed = True
        for call in result.tool_calls:  # parsed from the answer; shown once it has ended
            self.renderer.tool_call(call)
        pending = pending_calls(self.session.conversation.messages) if result.tool_calls else []
        if pending and self.session.toolbox.mock_messages(pending) is None:
            self.renderer.hint(f":tool-result JSON (or @file) answers the {len(pending)} call(s) in order")
        if result.stats is not None and self.show_stats:
            self.renderer.stats(result.stats)
        if result.json_check is not None:
            ok, line = result.json_check
            (self.renderer.info if ok else self.renderer.notice)(f"json: {line}")

    def notice(self, text: str) -> None:
        self.renderer.notice(text)

    def _input_capped(self, line: str) -> None:
        """The input reached its cap (input_cap): say so once per prompt, above it."""
        if self._cap_told:
            return
        self._cap_told = True
        from prompt_toolkit.application import run_in_terminal

        run_in_terminal(lambda: self.renderer.notice(line))

    @contextlib.contextmanager
    def _ctrl_c_stops_the_turn(self) -> Iterator[None]:
        """Within: SIGINT only asks the running turn to stop. A KeyboardInterrupt raised wherever the press
        happens to land (between the stream's end and the history append, in the autosave, in the renderer,
        in prompt_toolkit's start-up) would end the process or lose a shown answer."""
        if threading.current_thread() is not threading.main_thread():
            yield  # only the main thread gets signals and may set their handlers
            return
        old = signal.getsignal(signal.SIGINT)
        if old is signal.SIG_IGN:  # started with SIGINT ignored (nohup, a background job): keep it so
            yield
            return
        signal.signal(signal.SIGINT, lambda signum, frame: self._on_sigint())
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, old if old is not None else signal.default_int_handler)

    def _on_sigint(self) -> None:
        self.interrupted = True
        self.session.interrupt()

    def _continuation_prime(self, answer: str) -> str:
        """An answer cut inside a code fence goes on inside it: reopen the fence for the renderer only."""
        from qwenchat.text.fences import reopening_fence

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
            if self.interrupted:  # a script is stopped as a whole: its answer so far is kept and saved
                self.renderer.notice("interrupted: the rest of the input was not run")
                break

    def run_interactive(
        self, *, history_file: Path | None = None, input: Any = None, output: Any = None
    ) -> None:
        from prompt_toolkit import PromptSession

        session = PromptSession(
            history=_history(history_file),
            completer=_completer(self.registry, self),
            complete_while_typing=False,
            key_bindings=_key_bindings(lambda: self.session.engine.context_window, self._input_capped),
            enable_open_in_editor=True,  # Ctrl-X Ctrl-E edits the input in $EDITOR
            input=input,
            output=output,
        )

        def ask(prompt: str) -> str:
            # At the prompt the terminal is raw, so Ctrl-C is a key (KeyboardInterrupt from prompt()), not
            # a signal; a SIGINT as prompt_toolkit starts or stops goes to the handler below, never raises.
            message = prompt if self.renderer.plain else [("class:prompt", prompt)]
            self._cap_told = False
            return session.prompt(message, handle_sigint=False)

        self.ask = ask
        with self._ctrl_c_stops_the_turn():
            try:
                self._loop(ask)
            finally:
                self.session.settle()  # no background work may outlive the chat (the model goes next)

    def _loop(self, ask: Any) -> None:
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
            self.session.warm()  # while the user types the next line


MULTILINE = '"""'


def image_offer(text: str) -> str:
    """What a message that is only an image's path gets: how to attach it, or to send the path as text."""
    import shlex

    path = shlex.quote(text.strip().strip("'\""))
    return (
        f"that is an image file: :image {path} attaches it to your next message "
        "(nothing was sent; with other words around it the path goes as text)"
    )


MAX_ERROR_CHARS = 300  # an error that quotes a 5000-character argument is not read: cut it


def _short(line: str) -> str:
    return line if len(line) <= MAX_ERROR_CHARS else line[: MAX_ERROR_CHARS - 1] + "…"


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


# A message longer than this many characters per token of the context cannot fit: no tokenizer averages
# more over real text. The cap is only that; whether a message fits is the context check's to say, in tokens.
CHARS_PER_TOKEN_MAX = 16
NO_WINDOW_CAP = 4_000_000  # an endpoint does not say its context: a bound for memory only


def input_cap(window: int | None) -> int:
    """The most characters a message can take, from the context window (tokens) when the engine knows it."""
    return window * CHARS_PER_TOKEN_MAX if window else NO_WINDOW_CAP


def cap_notice(window: int | None, pasted: int | None = None) -> str:
    """What the user is told when a typed key (or a paste of `pasted` characters) meets the cap."""
    cap = input_cap(window)
    why = f"the model's context holds {window:,} tokens" if window else "a bound for memory"
    if pasted is None:
        return f"input limit: a message takes at most {cap:,} characters here ({why}); the rest was not typed"
    return (
        f"this paste ({pasted:,} characters) cannot fit: a message takes at most {cap:,} characters here "
        f"({why}); nothing was inserted"
    )


def _key_bindings(window: Callable[[], int | None], on_cap: Callable[[str], None] = lambda line: None) -> Any:
    """Alt-Enter for a newline, and the input cap (input_cap of the context `window()`): typed keys past it
    are refused before prompt_toolkit stores anything; a bracketed paste is inserted whole, as one edit,
    or, when it cannot fit, not at all (a cut paste would send part of what the user meant)."""
    from prompt_toolkit.filters import Condition, emacs_insert_mode, shift_selection_mode, vi_insert_mode
    from prompt_toolkit.key_binding import KeyBindings
    from prompt_toolkit.key_binding.bindings.named_commands import get_by_name
    from prompt_toolkit.keys import Keys

    kb = KeyBindings()
    insert_mode = (emacs_insert_mode | vi_insert_mode) & ~shift_selection_mode  # it replaces a selection

    @kb.add("escape", "enter")  # Alt-Enter, or Esc then Enter: a newline instead of sending
    def _newline(event: Any) -> None:
        event.current_buffer.insert_text("\n")

    @Condition
    def full() -> bool:
        from prompt_toolkit.application import get_app

        return len(get_app().current_buffer.text) >= input_cap(window())

    @kb.add(Keys.Any, filter=full, save_before=lambda event: False)
    def _refuse(event: Any) -> None:
        on_cap(cap_notice(window()))

    # prompt_toolkit means to save an undo state only when typing starts (if_no_repeat), but its
    # registered self-insert keeps its own always-save: one copy of the whole line per key.
    self_insert = get_by_name("self-insert")

    @kb.add(Keys.Any, filter=insert_mode & ~full, save_before=lambda event: not event.is_repeat)
    def _insert(event: Any) -> None:
        self_insert.call(event)

    @kb.add(Keys.BracketedPaste)
    def _paste(event: Any) -> None:
        # As prompt_toolkit's own paste: newlines as \n, one edit (one undo state) whatever the length.
        data = event.data.replace("\r\n", "\n").replace("\r", "\n")
        buffer = event.current_buffer
        w = window()
        if len(buffer.text) + len(data) > input_cap(w):
            on_cap(cap_notice(w, pasted=len(data)))
            return
        buffer.insert_text(data)

    return kb


def _history(path: Path | None) -> Any:
    from prompt_toolkit.history import FileHistory, InMemoryHistory

    if path is None:
        return InMemoryHistory()
    from qwenchat.paths import private_file

    try:
        return FileHistory(str(private_file(path)))  # what the user typed: theirs alone (0600)
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
