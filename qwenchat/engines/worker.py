"""The threads under the turns: one long-lived worker per engine (or a thread per job), waiting on a
cancelled job, and the lock that lets one turn run at a time."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator

from qwenchat.engines.api import Chunk


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
            if job is None:  # stop(): the engine is being released
                done.set()
                return
            try:
                job()
            finally:
                done.set()
            del job  # the last job's closure must not keep its engine (and model) alive

    def stop(self) -> None:
        """End the thread after the jobs queued so far (`:model` releases the old engine)."""
        if self._thread is not None and self._thread.is_alive():
            self._jobs.put((None, threading.Event()))


def own_thread(name: str) -> Callable[[Callable[[], None]], threading.Event]:
    """A submit that gives every job a thread of its own: for a job that may block where no cancel reaches
    it (a TCP connect), so that it cannot hold up the next turn."""

    def submit(job: Callable[[], None]) -> threading.Event:
        done = threading.Event()

        def run() -> None:
            try:
                job()
            finally:
                done.set()

        threading.Thread(target=run, name=name, daemon=True).start()
        return done

    return submit


def wait_for(done: threading.Event) -> None:
    """Wait for a cancelled job (one decode step); a second Ctrl-C must not abandon it."""
    while not done.is_set():
        try:
            done.wait(0.1)
        except KeyboardInterrupt:
            continue


def one_turn_at_a_time(lock: threading.Lock, turn: Iterator[Chunk]) -> Iterator[Chunk]:
    """An engine turn under its lock; a concurrent second turn gets an error chunk instead of waiting."""
    if not lock.acquire(blocking=False):
        turn.close()
        yield Chunk(finish_reason="error", error="the engine is busy with another turn")
        return
    try:
        yield from turn
    finally:
        lock.release()
