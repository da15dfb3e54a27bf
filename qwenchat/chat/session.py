"""One chat: conversation + settings + engine + store. Every change to the history is all-or-nothing.

The session builds each answer from the engine's chunks and never prints: a UI watches a turn through a
`ChatObserver` (the REPL hands the chunks on to the renderer), and without one the session runs headless
(benchmarks, batch runs): `ChatSession(engine).send("hi")` returns the answer, its finish reason and stats.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable
from typing import Any

from qwenchat.chat.attach import Attachment, compose, fit
from qwenchat.chat.collect import collect
from qwenchat.chat.context_fit import fit_context
from qwenchat.chat.images import check_request, refuse_unless_images, token_count
from qwenchat.chat.observer import ChatObserver, Headless, TurnResult
from qwenchat.chat.saving import Saving
from qwenchat.chat.template_probe import inserted_system
from qwenchat.conversation.file import now_stamp
from qwenchat.conversation.model import Conversation, Message
from qwenchat.conversation.store import SessionStore
from qwenchat.engines import api
from qwenchat.engines.api import Engine, GenerationRequest, TurnStats
from qwenchat.errors import ChatError, first_line
from qwenchat.images.ref import ImageRef
from qwenchat.probs.branch import BranchPlan, joined_probs
from qwenchat.probs.score import Score, score_last
from qwenchat.reasoning import Reasoning
from qwenchat.settings import Settings
from qwenchat.tools.calls import pending_calls
from qwenchat.tools.turns import MAX_MOCK_ROUNDS, ToolBox, result_message, take_calls

OVERFLOW_POLICIES = ("drop-oldest", "error")


# Stand-ins for the message not yet typed: the tokens every rendering shares are what the next prompt
# surely starts with (a message may merge with the tokens before it, so two unlike ones are compared).
WARM_PROBES = ("a", "\n\n1. ")


class ChatSession(Saving):
    """The state of one chat and the operations on it; usable with or without a terminal."""

    def __init__(
        self,
        engine: Engine,
        *,
        conversation: Conversation | None = None,
        settings: Settings | None = None,
        store: SessionStore | None = None,
        overflow: str = "drop-oldest",
        observer: ChatObserver | None = None,
        piped: bool = False,
    ) -> None:
        if overflow not in OVERFLOW_POLICIES:
            raise ValueError(f"overflow must be one of {OVERFLOW_POLICIES}, got {overflow!r}")
        self.engine = engine
        self.conversation = conversation if conversation is not None else Conversation()
        self.settings = (
            settings
            if settings is not None
            else Settings(engine.default_settings(), schema=engine.settings_schema())
        )
        self.store = store  # where autosave writes, or None
        self.overflow = overflow  # what to do when the conversation outgrows the context window
        self.observer: ChatObserver = observer if observer is not None else Headless()
        self.last_stats: TurnStats | None = None
        self.piped_run = piped  # a pipe run: its autosaves are marked so that `last` passes over them
        self.session_id, self.created, self.piped = "", "", piped
        self._saved_state: Any = None
        self._cancel: threading.Event | None = None  # the running turn's, for interrupt()
        self.probs_k = 0  # `:probs on K`: record K alternatives per answer token; 0: off
        self.interrupts = 0  # Ctrl-Cs so far: a run of several turns (:compare) stops at one between them
        self.reasoning = Reasoning()  # :reasoning, --reasoning (reasoning.py)
        self.toolbox = ToolBox()  # :tools, --tools, --tool-mocks (tool_turns.py)
        self.json_schema: dict[str, Any] | None = None  # answers constrained to it and checked (:json)
        self.prefill: str | None = None  # the next answer starts with this text (:prefill)
        self.attachments: list[Attachment] = []  # files for the next message (:read)
        self.images: list[ImageRef] = []  # images for the next message (:image)
        self.new_autosave_session()

    @property
    def model(self) -> str:
        return self.engine.name

    # -- turns -------------------------------------------------------------------------------
    def interrupt(self) -> None:
        """Stop the running turn as Ctrl-C does (the partial answer is kept); nothing when none runs.
        Safe from a signal handler: it only sets an event."""
        self.interrupts += 1
        cancel = self._cancel
        if cancel is not None:
            cancel.set()

    def send(self, text: str) -> TurnResult:
        """Add a user message and answer it; when nothing is answered the message is not kept. Files read
        with `attach` go before it."""
        full = self._with_attachments(text)
        images = tuple(self.images)
        result = self._transaction(lambda: self.conversation.add_user(full, images))
        if result.kept:
            self.attachments = []
            self.images = []
        return result

    def _with_attachments(self, text: str) -> str:
        """The message the model gets for `text`: the files read for it (:read) go first."""
        return compose(self.attachments, text) if self.attachments else text

    def attach(self, files: list[Attachment]) -> str:
        """Files for the next message, after a check against the context window (AttachError when they
        do not fit); returns their token count as a phrase."""
        counts = fit(self, files)
        self.attachments = [*self.attachments, *files]
        return counts

    def attach_images(self, images: list[ImageRef]) -> list[int | None]:
        """Images for the next message; ChatError when the engine takes none. Returns each image's prompt
        tokens (None where the engine cannot tell)."""
        refuse_unless_images(self.engine)
        counts = token_count(self.engine, images, self.settings.effective())
        self.images = [*self.images, *images]
        return counts

    def retry(self, seed: int | str | None = None) -> TurnResult:
        """Answer the last message again (with `seed` when given); a failed turn keeps the old answer.
        The seed stays set either way, as after `:seed`."""
        if self.last_role() != "assistant":
            raise ChatError("there is no answer to retry yet")
        if seed is not None:
            self.settings.set_seed(str(seed))
        return self._transaction(self.conversation.messages.pop)

    def edit(self, text: str) -> TurnResult:
        """Replace the last user message (and what follows it) by `text`, and answer it."""
        idx = self._last_user_index()
        if idx is None:
            raise ChatError("no message of yours to edit yet")

        images = self.conversation.messages[idx].images  # an edit changes the text, not the images

        def change() -> None:
            del self.conversation.messages[idx:]
            self.conversation.add_user(text, images)

        return self._transaction(change)

    def continue_(self) -> TurnResult:
        """Let the model go on with its last answer; the new text is appended to it."""
        if self.last_role() != "assistant":
            raise ChatError("there is no answer to continue")
        return self._transaction(lambda: None, continue_final=True)

    def branch(self, plan: BranchPlan) -> TurnResult:
        """Regenerate the last answer from a token on (`:branch`, planned by qwenchat.probs.branch): the
        answer so far is the plan's prefix, the model goes on from there. The old answer is kept behind the
        new one (`replaces`): `:undo` brings it back."""
        msgs = self.conversation.messages
        if self.last_role() != "assistant":
            raise ChatError("there is no answer to branch from")
        old = msgs[-1]

        def change() -> None:
            msgs[-1] = Message("assistant", plan.shown, True, list(plan.kept), replaces=old)

        return self._transaction(change, continue_final=True, branch=plan)

    def undo(self) -> list[Message]:
        """Remove the last exchange (the answer, if any, and the user message); returns what was removed.
        An answer made by `:branch` gives way to the one it replaced instead."""
        msgs = self.conversation.messages
        if not msgs:
            raise ChatError("nothing to undo")
        if msgs[-1].role == "assistant" and msgs[-1].replaces is not None:
            branched = msgs[-1]
            msgs[-1] = branched.replaces
            return [branched]
        removed = []
        while msgs and msgs[-1].role != "user":  # the answer, with any tool calls and results
            removed.append(msgs.pop())
        if msgs:
            removed.append(msgs.pop())
        return removed[::-1]

    def clear(self) -> None:
        """Forget the conversation (the system prompt stays) and the engine's cache. What follows is a new
        autosave session: the file of the old one keeps every turn it had."""
        self.conversation.clear()
        self.engine.reset()
        self.new_autosave_session()

    def new_autosave_session(self) -> None:
        """Autosave into a new file from now on; the current one stays exactly as it was."""
        if self.store is not None:
            self.store.release()  # the session left behind may be resumed elsewhere now
        self.session_id = SessionStore.new_id()
        self.created = now_stamp()
        self.piped = self.piped_run
        self._saved_state = None

    def set_system(self, system: str | None) -> None:
        """Set or remove the system prompt; refused (nothing changed) when the chat template rejects it."""
        old = self.conversation.system
        self.conversation.system = system
        try:
            self.engine.render_prompt(self.request(extra_user="x"))
        except NotImplementedError:  # a remote engine: the server applies the template
            return
        except Exception as exc:
            self.conversation.system = old
            raise ChatError(f"this model's chat template rejects that: {first_line(exc)}") from None

    def template_system(self) -> str | None:
        """The system prompt the chat template inserts by itself when the conversation has none (Qwen2.5's
        "You are Qwen, …"); None when it inserts none, or when that cannot be told (a server applies it)."""
        if self.conversation.system is not None:
            return None
        return inserted_system(self.engine, self.request(extra_user="x"))

    def score(self, answer: str) -> Score:
        """How likely the model finds `answer` as the answer to the last user message (`:score`, a batch
        reference; probs/score.py); Ctrl-C (interrupt) stops it. Nothing changes."""
        cancel = self._cancel = threading.Event()
        try:
            return score_last(self, answer, cancel)
        finally:
            self._cancel = None

    # -- queries -----------------------------------------------------------------------------
    def last_role(self) -> str | None:
        msgs = self.conversation.messages
        return msgs[-1].role if msgs else None

    def last_user_text(self) -> str | None:
        idx = self._last_user_index()
        return None if idx is None else self.conversation.messages[idx].content

    def answers(self) -> list[str]:
        return [m.content for m in self.conversation.messages if m.role == "assistant"]

    def dropped_settings_notice(self) -> str | None:
        """Config-file settings the engine cannot honour were dropped at start: one notice says which."""
        dropped = self.settings.dropped
        return self.settings.schema.dropped_notice(dropped, "the config file") if dropped else None

    def request(
        self,
        continue_final: bool = False,
        extra_user: str | None = None,
        extra_images: tuple[ImageRef, ...] = (),
    ) -> GenerationRequest:
        """The request for the next turn; `extra_user` appends a user message (for :template, :tokens),
        with `extra_images`."""
        messages = self.conversation.to_chat()
        if extra_user is not None:
            messages.append(Message("user", extra_user, images=extra_images).to_chat())
        return GenerationRequest(
            messages=messages,
            settings=self.settings.effective(),
            seed=self.settings.seed,
            continue_final=continue_final,
            probs_k=self.probs_k,
            template_kwargs=self.reasoning.template_kwargs(self.template_variables()),
            tools=self.toolbox.definitions,
            thinking_budget=self.reasoning.budget,
            json_schema=self.json_schema,
        )

    def next_request(self, text: str) -> GenerationRequest:
        """The request `send(text)` would make now: the files read for it (:read) before its text, and a
        pending :prefill as the start of the answer."""
        request = self.request(
            continue_final=bool(self.prefill),
            extra_user=self._with_attachments(text),
            extra_images=tuple(self.images),
        )
        if self.prefill:
            request.messages.append(Message("assistant", self.prefill).to_chat())
        return request

    def warm(self) -> bool:
        """Between turns (the user is typing): let the engine compute what the next prompt surely starts
        with: the conversation so far, the answer included. A best effort that never changes an answer."""
        if not isinstance(self.engine, api.SupportsWarm) or self.last_role() != "assistant":
            return False
        try:
            return bool(self.engine.warm([self.request(extra_user=probe) for probe in WARM_PROBES]))
        except Exception:  # a template error shows on the next turn, where it belongs
            return False

    def template_variables(self) -> set[str] | None:
        """The variables the engine's chat template reads; None when unknown (a server applies it)."""
        engine = self.engine
        return engine.template_variables() if isinstance(engine, api.SupportsTemplateVariables) else None

    def tool_result(self, content: str) -> TurnResult | None:
        """Answer the next pending tool call; once every call is answered the model goes on (a turn).
        None while calls are still pending."""
        pending = pending_calls(self.conversation.messages)
        if not pending:
            raise ChatError("no tool call is waiting for a result")
        message = result_message(pending[0], content)
        if len(pending) > 1:
            self.conversation.messages.append(message)
            return None
        return self._transaction(lambda: self.conversation.messages.append(message))

    def settle(self) -> None:
        """Stop the engine's background work (see warm) and wait for it: the chat is ending."""
        if isinstance(self.engine, api.SupportsSettle):
            self.engine.settle()

    def fit_context(self, request: GenerationRequest) -> GenerationRequest:
        """Never truncate silently: drop the oldest exchanges with a notice, or refuse (--overflow error)
        with a ChatError (context_fit.py)."""
        return fit_context(self.engine, request, self.overflow, self.observer.notice)

    def answer_request(self, request: GenerationRequest) -> TurnResult:
        """Stream an answer to `request` through the observer without touching the history (:compare)."""
        return self._stream(self.fit_context(request), None)

    # -- one turn ----------------------------------------------------------------------------
    def _last_user_index(self) -> int | None:
        msgs = self.conversation.messages
        return next((i for i in range(len(msgs) - 1, -1, -1) if msgs[i].role == "user"), None)

    def _transaction(
        self, change: Callable[[], Any], continue_final: bool = False, branch: BranchPlan | None = None
    ) -> TurnResult:
        """Apply `change` to the history and run a turn; put the history back when nothing was answered
        or anything escaped (a refusal, a Ctrl-C outside the stream)."""
        before = list(self.conversation.messages)  # Message objects are replaced, never edited in place
        prefill = None if continue_final or branch is not None else self.prefill
        try:
            change()
            if prefill:  # the answer continues an assistant message that starts with the prefill
                self.conversation.add_assistant(prefill)
            # a prefill, or the kept part of a :branch answer, is shown as the answer's start
            shown = branch.shown if branch is not None else prefill or ""
            result = self._turn(continue_final or bool(prefill), branch, shown=shown)
        except BaseException:
            self.conversation.messages[:] = before
            raise
        if not result.kept:
            self.conversation.messages[:] = before
        elif prefill:
            self.prefill = None  # used: it was for the next answer only
        return result

    def _turn(
        self, continue_final: bool, branch: BranchPlan | None = None, rounds: int = 0, shown: str = ""
    ) -> TurnResult:
        request = self.fit_context(self.request(continue_final))
        if branch is not None:
            request = branch.request(request)
        msgs = self.conversation.messages
        continues = msgs[-1].content if continue_final and msgs and msgs[-1].role == "assistant" else None
        result = self._stream(request, None if shown else continues, shown)
        if result.finish_reason == "error" and not result.text:
            result.kept = False
        elif continues is not None:
            last = msgs[-1]
            probs = joined_probs(last.probs, result.probs)
            msgs[-1] = dataclasses.replace(
                last,
                content=continues + result.text,
                interrupted=result.finish_reason != "stop",
                probs=probs,
            )
        else:
            self.conversation.add_assistant(result.text, interrupted=result.finish_reason != "stop")
            msgs[-1].probs = result.probs
        if result.kept:
            result.tool_calls = take_calls(self.conversation, self.toolbox)
        if self.json_schema is not None and result.kept:
            from qwenchat.structured.check import validate_answer

            result.json_check = validate_answer(msgs[-1].content, self.json_schema)
        self.observer.turn_done(result)
        mocked = self.toolbox.mock_messages(pending_calls(msgs)) if result.tool_calls else None
        if mocked and rounds < MAX_MOCK_ROUNDS:  # --tool-mocks answers: the model goes on
            for m in mocked:
                self.observer.notice(f"tool {m.name} answered from {self.toolbox.mocks_source}")
            msgs.extend(mocked)
            return self._turn(False, None, rounds + 1)
        return result

    def _stream(self, request: GenerationRequest, continues: str | None, shown: str = "") -> TurnResult:
        """The engine's answer, shown as it comes (collect.py); Ctrl-C (interrupt) cancels it."""
        check_request(self.engine, request.messages)  # images for an engine that takes none: one line
        cancel = self._cancel = threading.Event()
        try:
            stream = self.engine.stream(request, cancel)
            result = collect(stream, self.observer, request, cancel, continues, shown)
        finally:
            self._cancel = None
        if result.stats is not None:
            self.last_stats = result.stats
        return result
