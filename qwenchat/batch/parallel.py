"""A batch with several requests in flight (`--parallel N` against `--endpoint`), so that the server can
batch them: one worker thread per engine (an engine runs one turn at a time, so N requests need N engines,
each its own connection to the same server), one run each at a time, through the same `answer_one` as
the one-at-a-time runner.

Only this module's calling thread touches the results file: it hands runs out in the prompts' order and
writes each record once every earlier run has been decided, so the file's order is the prompts' order and
a kill -9 leaves a contiguous prefix on disk (a resume does the rest, again in order). Answers that
finished early wait in memory for the runs before them; at most WINDOW_PER_WORKER x N runs are handed out
past the first one not yet written, which bounds what a kill -9 can cost (those are asked again, never
written twice). Ctrl-C cuts every request in flight (each session's turn hangs up its connection) and
writes the answers that finished before it, as far as they reach without a gap."""

from __future__ import annotations

import dataclasses
import queue
import signal
import threading
import time
from dataclasses import dataclass
from typing import Any

from qwenchat.batch.plan import Run
from qwenchat.batch.records import ResultsFile
from qwenchat.batch.runner import (
    BatchContext,
    BatchProgress,
    Summary,
    _Silent,
    _Stopped,
    answer_one,
    grade_record,
)
from qwenchat.chat.session import ChatSession
from qwenchat.engines.api import Engine
from qwenchat.errors import UserError, first_line

WINDOW_PER_WORKER = 4  # runs handed out past the first unwritten one, per worker
POLL_S = 0.05  # how often the writer looks at Ctrl-C while it waits


@dataclass
class _Done:
    record: dict[str, Any] | None = None
    error: str | None = None  # a failed run: reported, not written (a resume asks it again)
    stopped: bool = False  # cut by Ctrl-C (or never started): not a finished run
    crash: BaseException | None = None  # a bug in a worker: re-raised on the calling thread


def contexts(ctx: BatchContext, engines: list[Engine]) -> list[BatchContext]:
    """One context per engine, the rest of the batch the same."""
    return [dataclasses.replace(ctx, engine=e) for e in engines]


def run_parallel(
    ctxs: list[BatchContext],
    runs: list[Run],
    results: ResultsFile,
    progress: BatchProgress | None = None,
) -> Summary:
    """Every run not in `results` yet, up to len(ctxs) at once, written in order; must be called on the
    main thread for Ctrl-C (SIGINT) to reach it. The summary says `interrupted` after Ctrl-C."""
    progress = progress or _Silent()
    summary = Summary(total=len(runs))
    todo = [r for r in runs if r.key not in results.done]
    summary.skipped = len(runs) - len(todo)
    stop = threading.Event()
    sessions: dict[int, ChatSession] = {}  # the run index of each turn in flight -> its session
    tasks: queue.Queue[int | None] = queue.Queue()
    finished: queue.Queue[tuple[int, _Done]] = queue.Queue()

    def interrupt_all() -> None:
        for s in list(sessions.values()):  # list(): a worker may add or remove one meanwhile
            s.interrupt()

    def on_sigint(signum: int, frame: Any) -> None:
        stop.set()
        interrupt_all()

    def work(ctx: BatchContext) -> None:
        while (i := tasks.get()) is not None:
            finished.put((i, _answer(ctx, todo[i], i)))

    def _answer(ctx: BatchContext, run: Run, i: int) -> _Done:
        def hook(session: ChatSession) -> bool:
            sessions[i] = session  # before looking at `stop`: Ctrl-C either sees it or is seen here
            return not stop.is_set()

        try:
            record = answer_one(ctx, run, hook)
        except _Stopped:
            return _Done(stopped=True)
        except UserError as exc:
            return _Done(error=first_line(exc))
        except BaseException as exc:  # not lost in a thread: the caller re-raises it
            return _Done(crash=exc)
        finally:
            sessions.pop(i, None)
        if record["finish_reason"] == "interrupted":
            return _Done(stopped=True)
        if record["finish_reason"] == "error":
            return _Done(error=record["error"] or "error")
        try:
            record.update(grade_record(ctx, run.prompt_index, record, hook))  # graded before it is written
        except BaseException as exc:  # a bug: the caller re-raises it
            return _Done(crash=exc)
        finally:
            sessions.pop(i, None)
        if stop.is_set():  # Ctrl-C while a judge graded it: done again on resume
            return _Done(stopped=True)
        return _Done(record=record)

    workers = [threading.Thread(target=work, args=(c,), name="qwenchat-batch", daemon=True) for c in ctxs]
    old = signal.signal(signal.SIGINT, on_sigint) if _main_thread() else None
    window = WINDOW_PER_WORKER * len(ctxs)
    done: dict[int, _Done] = {}
    handed = written_upto = in_flight = 0  # runs handed out; runs decided in order; runs out now
    crash: BaseException | None = None
    t0 = time.monotonic()
    progress.start(len(runs), summary.skipped)
    try:
        for w in workers:
            w.start()
        while True:
            while (
                not stop.is_set()
                and in_flight < len(ctxs)
                and handed < len(todo)
                and handed < written_upto + window
            ):
                progress.running(todo[handed])
                tasks.put(handed)
                handed += 1
                in_flight += 1
            if in_flight == 0:
                break
            try:
                i, outcome = finished.get(timeout=POLL_S)
            except queue.Empty:
                if stop.is_set():
                    interrupt_all()  # a turn that started just after the Ctrl-C also stops
                continue
            in_flight -= 1
            if outcome.crash is not None:
                crash = crash or outcome.crash
                stop.set()
                interrupt_all()
                continue
            done[i] = outcome
            written_upto = _write_ready(done, written_upto, todo, results, summary, progress)
    finally:
        for _ in workers:
            tasks.put(None)
        if old is not None:
            signal.signal(signal.SIGINT, old)
        summary.elapsed_s = time.monotonic() - t0
        summary.interrupted = stop.is_set() and crash is None
    if crash is not None:
        raise crash
    return summary


def _write_ready(
    done: dict[int, _Done],
    upto: int,
    todo: list[Run],
    results: ResultsFile,
    summary: Summary,
    progress: BatchProgress,
) -> int:
    """Write (or count as failed) every decided run from `upto` on, in order, up to the first one still
    out or cut short; returns the new `upto`."""
    while upto in done and not done[upto].stopped:
        outcome = done.pop(upto)
        run = todo[upto]
        if outcome.record is not None:
            results.append(outcome.record)  # flushed and fsynced before the next one
            summary.written += 1
        else:
            summary.failed.append((run.id, outcome.error or "error"))
        progress.finished(run, outcome.record)
        upto += 1
    return upto


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()
