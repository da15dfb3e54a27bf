"""One answer from an engine's stream: shown through the chat's observer as it comes, gathered into a
TurnResult (its text, finish reason, stats, token probabilities)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from qwenchat.chat.observer import AnswerSink, ChatObserver, TurnResult
from qwenchat.engines.api import Chunk, GenerationRequest


def collect(
    stream: Iterator[Chunk],
    observer: ChatObserver,
    request: GenerationRequest,
    cancel: threading.Event,
    continues: str | None = None,
    shown: str = "",
) -> TurnResult:
    """Run an engine's stream to its end, showing it through `observer`, and gather what it said. A Ctrl-C
    that lands here cancels: the engine stops at its next step and what it still sends is collected.
    `continues` is the answer being continued; `shown` a prefill shown as the answer's start."""
    parts: list[str] = []
    probs: list[Any] | None = [] if request.probs_k else None
    sink: AnswerSink | None = None
    final: Chunk | None = None

    def take(chunk: Chunk) -> None:
        nonlocal sink, final
        parts.append(chunk.text)  # the history gets what the engine sent, whatever the UI managed
        if probs is not None and chunk.probs:
            probs.extend(chunk.probs)
        if sink is None:  # opened on the first chunk, which may say whether a think block is open
            sink = observer.answer(think_open=chunk.think_open, continues=continues)
            if shown:  # a prefill: shown as the answer's start
                sink.feed(shown)
        if chunk.prefill is not None and hasattr(sink, "prefill"):
            sink.prefill(*chunk.prefill)  # a progress line while a long prompt is prefilled
        sink.feed(chunk.text)
        if chunk.finish_reason:
            final = chunk

    try:
        for chunk in stream:
            take(chunk)
    except KeyboardInterrupt:
        cancel.set()  # the engine stops at its next decode step
        _drain(stream, take)
    if probs == [] and any(parts) and final is not None and not final.error:
        probs = None
        observer.notice("no token probabilities came with this answer: the server sends no logprobs")
    if sink is None:
        sink = observer.answer(think_open=None, continues=continues)
        if shown:
            sink.feed(shown)
    reason = (final.finish_reason if final is not None else None) or "interrupted"
    stats = final.stats if final is not None else None
    error = final.error if final is not None else None
    sink.end(reason, stats, error)
    return TurnResult("".join(parts), reason, stats, error, probs=probs)


def _drain(stream: Iterable[Chunk], take: Callable[[Chunk], None]) -> None:
    """Collect what the engine still sends after a cancel; extra Ctrl-Cs are ignored meanwhile."""
    while True:
        try:
            for chunk in stream:
                take(chunk)
            return
        except KeyboardInterrupt:
            continue
