"""The generate thread shared by the in-process engines, the consumer side of its token queue, and the
stop-string matcher both apply to the streamed text."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from typing import Any

from qwenchat.think import partial_suffix

END = object()  # put on the queue by a job when it has finished, whatever happened


class GenerateWorker:
    """One long-lived thread per engine. A new thread every turn costs decode speed on small CPUs: each new
    thread that calls into torch or ggml gets its own OpenMP team, which then competes with the old ones."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._jobs: queue.Queue = queue.Queue()
        self._thread: threading.Thread | None = None

    def submit(self, job: Callable[[], None]) -> threading.Event:
        """Run `job` on the worker thread; the returned event is set once it has returned or raised."""
        done = threading.Event()
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)
            self._thread.start()
        self._jobs.put((job, done))
        return done

    def _loop(self) -> None:
        while True:
            job, done = self._jobs.get()
            try:
                job()
            finally:
                done.set()


def queue_items(q: queue.Queue, done: threading.Event, cancel: threading.Event) -> Iterator[Any]:
    """What the job puts on `q`, until END; never waits on a finished job, and a Ctrl-C that lands here
    (rather than in the caller) means the same as one there: cancel."""
    while True:
        try:
            item = q.get(timeout=0.1)
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


def wait_for(done: threading.Event) -> None:
    """Wait for a cancelled job (one decode step); a second Ctrl-C must not abandon it."""
    while not done.is_set():
        try:
            done.wait(0.1)
        except KeyboardInterrupt:
            continue


def common_prefix_len(a: list[int], b: list[int]) -> int:
    """How many leading tokens two id lists share: the part of a prompt a kept KV cache already holds."""
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def one_turn_at_a_time(lock: threading.Lock, turn: Iterator[Any]) -> Iterator[Any]:
    """An engine turn under its lock; a concurrent second turn gets an error chunk instead of waiting."""
    from qwenchat.engines.api import Chunk

    if not lock.acquire(blocking=False):
        turn.close()
        yield Chunk(finish_reason="error", error="the engine is busy with another turn")
        return
    try:
        yield from turn
    finally:
        lock.release()


def error_line(exc: BaseException) -> str:
    """An exception as one line for the user."""
    first = (str(exc).strip().splitlines() or [""])[0]
    name = type(exc).__name__
    return f"{name}: {first[:300]}" if first else name


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
