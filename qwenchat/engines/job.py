"""What an engine hands the shared turn (turn.py): the `Job` its prepare step builds from a request, the
`Outcome` the job fills in on the worker thread, and the errors and progress it reports."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from qwenchat.engines.api import EngineError


@dataclass
class Outcome:
    """What a job found out, read by the turn once the job has ended."""

    reused_tokens: int = 0  # prompt tokens the kept cache held
    finish: str | None = None  # "stop" (end of sequence) or "length", when the job knows
    error: str | None = None  # one line for the user
    prompt_tokens: int | None = None  # counts the job has from elsewhere (a server's usage)
    generated_tokens: int | None = None
    peak_gpu_mem_bytes: int | None = None
    drafted_tokens: int | None = None  # speculative decoding's counts, when it was on
    accepted_tokens: int | None = None
    stop_hit: bool = False  # set by the turn when a stop string was seen; a job may end early on it
    system_fingerprint: str | None = None  # a server's name for its backend configuration, when it sends one


@dataclass(frozen=True)
class PrefillProgress:
    """Emitted by a job between prefill chunks: prompt tokens computed so far out of those to compute."""

    done: int
    total: int


def _nothing() -> None:
    pass


@dataclass
class Job:
    """Everything engine-specific about one turn. `run(emit, outcome, cancel)` runs on the worker thread,
    passes each generated item (a token id, a text delta) to `emit` and must return soon after `cancel` is
    set; `decode` turns an item into text on the consumer's side."""

    run: Callable[[Callable[[Any], None], Outcome, threading.Event], None]
    prompt_tokens: int = 0
    think_open: bool | None = None  # the prompt left a <think> open (None: unknown)
    max_new_tokens: int | None = None  # this many items and the turn ended for "length"
    stop_strings: str | list[str] | None = None
    decode: Callable[[Any], str] = str
    flush: Callable[[], str] = lambda: ""  # what the decoder still holds at the end
    abort: Callable[[], None] = _nothing  # wakes a job blocked where `cancel` does not reach (a socket)
    invalidate: Callable[[], None] = _nothing  # the engine's cache cannot be trusted after this turn
    commit: Callable[[list[Any]], None] = lambda items: None  # a clean end: keep the cache for the next turn
    wait: bool = True  # after a cancel, wait for the job (False: it holds nothing the next turn uses)
    # Token records (probs.record.TokenProb) the job appends as it goes, each before its token is emitted;
    # the turn hands them on with the chunks. None: probabilities are off.
    probs: list[Any] | None = None


class PromptError(EngineError):
    """Raised by a prepare step when the turn cannot start (the prompt does not fit the context)."""

    def __init__(self, message: str, *, prompt_tokens: int = 0) -> None:
        super().__init__(message)
        self.prompt_tokens = prompt_tokens


def error_line(exc: BaseException) -> str:
    """An exception as one line for the user."""
    first = (str(exc).strip().splitlines() or [""])[0]
    name = type(exc).__name__
    return f"{name}: {first[:300]}" if first else name
