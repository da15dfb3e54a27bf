"""A fake engine for the REPL and command layer: it answers from a script and records what it was asked."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any

from qwenchat.engines.api import Chunk, GenerationRequest, TurnStats
from qwenchat.settings import NEUTRAL, SettingsSchema


class FakeEngine:
    name = "fake-model"

    def __init__(self, defaults: dict[str, Any] | None = None) -> None:
        self.requests: list[GenerationRequest] = []
        self.answers: list[str | Exception] = []
        self.resets = 0
        self.ctx = 4096
        self.interrupt_after: int | None = None  # send a real SIGINT after this many chunks
        self._defaults = defaults or {"temperature": 0.7, "top_p": 0.8, "do_sample": True}

    def enqueue(self, answers: list[str | Exception]) -> FakeEngine:
        self.answers.extend(answers)
        return self

    @property
    def context_window(self) -> int | None:
        return self.ctx

    def default_settings(self) -> dict[str, Any]:
        return dict(self._defaults)

    def settings_schema(self) -> SettingsSchema:
        return NEUTRAL  # every common setting

    def reset(self) -> None:
        self.resets += 1

    def render_prompt(self, request: GenerationRequest) -> str:
        return "".join(f"<|{m['role']}|>{m['content']}\n" for m in request.messages)

    def count_tokens(self, request: GenerationRequest) -> int:
        return len(self.render_prompt(request).split())

    def stream(self, request: GenerationRequest, cancel: threading.Event) -> Iterator[Chunk]:
        self.requests.append(request)
        answer = self.answers.pop(0) if self.answers else "ok"
        if isinstance(answer, Exception):
            yield Chunk(finish_reason="error", error=str(answer), stats=TurnStats(finish_reason="error"))
            return
        words = answer.split(" ")
        sent = 0
        for i, word in enumerate(words):
            if cancel.is_set():
                break
            if self.interrupt_after is not None and i == self.interrupt_after:
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(0.05)  # let the handler run: the KeyboardInterrupt lands somewhere in the caller
            sent += 1
            yield Chunk(text=word if i == 0 else " " + word, tokens=sent)
        reason = "interrupted" if cancel.is_set() else "stop"
        stats = TurnStats(prompt_tokens=10, generated_tokens=sent, finish_reason=reason)
        yield Chunk(tokens=sent, finish_reason=reason, stats=stats)
