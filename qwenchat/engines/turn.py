"""One turn, the same for every engine.

An engine's prepare step turns a request into a `Job` (its prompt, its generate job, its decoder, its cache
hooks) or raises; the turn does the rest: the error chunk when preparation fails, the first chunk, the job
on the engine's worker thread, the queue between them, stop strings, cancel-and-wait, cache invalidation
after an abort or an error, the finish reason (decided here, once), the stats and the final chunk. What an
engine hands the turn is in job.py; the threads it runs on are in worker.py.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from qwenchat.engines.api import Chunk, GenerationRequest, TurnStats
from qwenchat.engines.job import Job, Outcome, PrefillProgress, PromptError, error_line
from qwenchat.engines.worker import GenerateWorker, one_turn_at_a_time, own_thread, wait_for
from qwenchat.errors import UserError
from qwenchat.reasoning import BudgetTracker
from qwenchat.text.think import partial_suffix

END = object()  # put on the queue by a job when it has finished, whatever happened
POLL_S = 0.05  # how often the consumer looks at `cancel` while the job is quiet


Prepare = Callable[[GenerationRequest], Job]


class Turns:
    """One engine's turns: at most one at a time (a second gets an error chunk), each job on the engine's
    long-lived worker thread, or on a thread of its own with `own_threads`."""

    def __init__(
        self,
        name: str,
        *,
        error_line: Callable[[BaseException], str] = error_line,
        own_threads: bool = False,
    ) -> None:
        self.lock = threading.Lock()
        self.error_line = error_line
        self._worker = None if own_threads else GenerateWorker(name)
        self._submit = own_thread(name) if self._worker is None else self._worker.submit
        self._warm: tuple[threading.Event, threading.Event] | None = None  # (cancel, done) of background work

    def close(self) -> None:
        """Stop background work and the worker thread: the engine is being released."""
        self.settle()
        if self._worker is not None:
            self._worker.stop()

    def warm(self, work: Callable[[threading.Event], None]) -> None:
        """Run `work(cancel)` on the worker between turns: the engine computing, while the user types, what
        the next prompt surely starts with. The next turn (or `settle`) cancels it and waits for the piece in
        flight, so `work` must leave the engine consistent wherever it stops; its errors are its own."""
        self.settle()
        cancel = threading.Event()

        def job() -> None:
            try:
                work(cancel)
            except Exception:  # pragma: no cover - the engine's work handles its own; never kill the worker
                pass

        self._warm = (cancel, self._submit(job))

    def settle(self, *, finish: bool = False) -> float:
        """Stop background work (or, with `finish`, let it end) and wait for it; the seconds waited."""
        if self._warm is None:
            return 0.0
        cancel, done = self._warm
        t0 = time.perf_counter()
        if not finish:
            cancel.set()
        wait_for(done)
        self._warm = None
        return time.perf_counter() - t0

    def stream(
        self, prepare: Prepare, request: GenerationRequest, cancel: threading.Event
    ) -> Iterator[Chunk]:
        return one_turn_at_a_time(self.lock, self._turn(prepare, request, cancel))

    def _turn(self, prepare: Prepare, request: GenerationRequest, cancel: threading.Event) -> Iterator[Chunk]:
        t0 = time.perf_counter()
        self.settle()  # background work stops at its next step; what it computed stays cached
        try:
            job = prepare(request)
        except Exception as exc:  # a template that rejects the roles, a bad setting, no server
            yield self._refused(exc, t0)
            return
        yield Chunk(think_open=job.think_open)  # lets the renderer start before the first token
        q: queue.Queue = queue.Queue()
        outcome = Outcome()
        done = self._submit(self._guarded(job, q, outcome, cancel))
        stopper = StopMatcher(job.stop_strings)
        sent = [0]  # job.probs handed on so far
        thinking = BudgetTracker(None, job.think_open)  # counts thinking and answer tokens for the stats
        items: list[Any] = []
        t_first: float | None = None
        finished = False
        try:
            for item in _items(q, done, cancel, job):
                if isinstance(item, PrefillProgress):
                    yield Chunk(prefill=(item.done, item.total))
                    continue
                if t_first is None:
                    t_first = time.perf_counter()
                items.append(item)
                if outcome.stop_hit:
                    continue  # past the stop string; the job has been told
                piece = job.decode(item)
                thinking.step(piece)
                text, outcome.stop_hit = stopper.feed(piece)
                if text:
                    yield Chunk(text=text, tokens=len(items), probs=_new_probs(job, sent))
            finished = True
        finally:
            _stop(job, done, cancel)
            if not finished:  # the caller stopped listening mid-turn
                job.invalidate()
        tail = "" if outcome.stop_hit else _tail(stopper, job, outcome)
        generated = outcome.generated_tokens if outcome.generated_tokens is not None else len(items)
        if tail:
            yield Chunk(text=tail, tokens=generated)
        if outcome.error is not None:
            job.invalidate()  # half-written: do not trust it
        else:
            job.commit(items)
        final = _final(job, outcome, cancel, len(items), generated, t0, t_first)
        final.probs = _new_probs(job, sent)
        if final.stats is not None and outcome.generated_tokens is None:  # items are tokens
            final.stats.thinking_tokens = thinking.thinking
        yield final

    def _guarded(
        self, job: Job, q: queue.Queue, outcome: Outcome, cancel: threading.Event
    ) -> Callable[[], None]:
        def work() -> None:
            try:
                job.run(q.put, outcome, cancel)
            except BaseException as exc:  # reported to the user as one line; the session survives
                outcome.error = outcome.error or self.error_line(exc)
            finally:
                q.put(END)

        return work

    def _refused(self, exc: Exception, t0: float) -> Chunk:
        message = str(exc) if isinstance(exc, UserError) else self.error_line(exc)
        elapsed = time.perf_counter() - t0
        prompt = exc.prompt_tokens if isinstance(exc, PromptError) else 0
        stats = TurnStats(prompt_tokens=prompt, finish_reason="error", ttft_s=elapsed, total_s=elapsed)
        return Chunk(finish_reason="error", error=message, stats=stats)


def _final(
    job: Job,
    outcome: Outcome,
    cancel: threading.Event,
    items: int,
    generated: int,
    t0: float,
    t_first: float | None,
) -> Chunk:
    """The last chunk of a turn: its finish reason and its stats."""
    reason = finish_reason(outcome, cancel, items, job.max_new_tokens)
    stats = TurnStats.timed(
        prompt_tokens=outcome.prompt_tokens if outcome.prompt_tokens is not None else job.prompt_tokens,
        reused_tokens=outcome.reused_tokens,
        generated_tokens=generated,
        t0=t0,
        t_first=t_first,
        t_end=time.perf_counter(),
        finish_reason=reason,
        peak_gpu_mem_bytes=outcome.peak_gpu_mem_bytes,
        drafted_tokens=outcome.drafted_tokens,
        accepted_tokens=outcome.accepted_tokens,
        system_fingerprint=outcome.system_fingerprint,
    )
    return Chunk(tokens=generated, finish_reason=reason, stats=stats, error=outcome.error)


def _new_probs(job: Job, sent: list[int]) -> list[Any] | None:
    """The token records the job appended since the last call (the job may append meanwhile)."""
    if job.probs is None:
        return None
    new = job.probs[sent[0] :]
    sent[0] += len(new)
    return new


def finish_reason(outcome: Outcome, cancel: threading.Event, generated: int, max_new: int | None) -> str:
    """Why the turn ended, decided once for every engine: a failure; the end of the answer (end of
    sequence, a stop string); Ctrl-C; the token limit."""
    if outcome.error is not None:
        return "error"
    if outcome.stop_hit or outcome.finish == "stop":
        return "stop"
    if cancel.is_set():
        return "interrupted"
    if outcome.finish == "length" or (max_new and generated >= max_new):
        return "length"
    return "stop"


def _stop(job: Job, done: threading.Event, cancel: threading.Event) -> None:
    """Stop a job still running (cancelled, or its turn abandoned) before anyone reuses what it holds."""
    if not done.is_set():
        cancel.set()
        job.abort()
        if job.wait:
            wait_for(done)


def _tail(stopper: StopMatcher, job: Job, outcome: Outcome) -> str:
    """What the decoder and the stop matcher still hold once the job has ended."""
    text, outcome.stop_hit = stopper.feed(job.flush())
    return text if outcome.stop_hit else text + stopper.flush()


def _items(q: queue.Queue, done: threading.Event, cancel: threading.Event, job: Job) -> Iterator[Any]:
    """What the job puts on `q`, until END; never waits on a finished job. A Ctrl-C that lands here (rather
    than in the caller) means the same as one there: cancel. A job that holds nothing shared is left to
    end on its own once cancelled."""
    aborted = False
    while True:
        if cancel.is_set() and not aborted:
            aborted = True
            job.abort()
            if not job.wait:
                return
        try:
            item = q.get(timeout=POLL_S)
        except queue.Empty:
            if done.is_set() and q.empty():
                return
            continue
        except KeyboardInterrupt:
            cancel.set()
            continue
        if item is END:
            return
        yield item


class Background:
    """`idle`, `settle` and `close` for an engine whose `_turns` may run background work (`warm`)."""

    _turns: Turns

    def idle(self) -> float:
        """Wait for background work to finish (benchmarks: a typing pause); the seconds it took."""
        return self._turns.settle(finish=True)

    def settle(self) -> None:
        """Stop background work at its next step and wait for it (before exit: nothing may run then)."""
        self._turns.settle()

    def close(self) -> None:
        """Stop background work and the worker thread, whose last job still refers to the engine (`:model`
        releases it)."""
        self._turns.close()


class StopMatcher:
    """Finds stop strings in streamed text; holds back only a tail that could still become one."""

    def __init__(self, stops: str | list[str] | None) -> None:
        self.stops = [s for s in ([stops] if isinstance(stops, str) else stops or []) if s]
        self.buf = ""

    def _partial(self) -> int:
        """Length of the longest tail of the buffer that is a proper prefix of a stop string."""
        return max((partial_suffix(self.buf, stop) for stop in self.stops), default=0)

    def feed(self, text: str) -> tuple[str, bool]:
        """(text safe to emit, whether a stop string was hit)."""
        if not self.stops:
            return text, False
        self.buf += text
        hits = [i for i in (self.buf.find(s) for s in self.stops) if i >= 0]
        if hits:
            out, self.buf = self.buf[: min(hits)], ""
            return out, True
        cut = len(self.buf) - self._partial()
        out, self.buf = self.buf[:cut], self.buf[cut:]
        return out, False

    def flush(self) -> str:
        out, self.buf = self.buf, ""
        return out
