"""The shared turn (engines/turn.py) with the smallest engine there can be: it implements only its own part
(a prepare step whose job emits scripted tokens) and gets cancel, errors, stop strings, finish reasons,
stats and one-turn-at-a-time from the turn."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from qwenchat.engines.api import Chunk, EngineError, GenerationRequest
from qwenchat.engines.job import Job, Outcome, PrefillProgress, PromptError
from qwenchat.engines.turn import StopMatcher, Turns

END_OF_TEXT = "<eos>"


class ScriptedEngine:
    """A whole engine in 30 lines: the tokens to say, how slowly, where to fail."""

    name = "scripted"

    def __init__(self, tokens: list[str], *, delay: float = 0.0, fail_at: int | None = None) -> None:
        self.tokens, self.delay, self.fail_at = tokens, delay, fail_at
        self.prepare_error: Exception | None = None
        self.cache_valid = False  # what invalidate/commit act on: a stand-in for a KV cache
        self.committed: list[Any] = []
        self._turns = Turns("scripted-test")

    def stream(self, request: GenerationRequest, cancel: threading.Event) -> Iterator[Chunk]:
        return self._turns.stream(self._prepare, request, cancel)

    def _prepare(self, request: GenerationRequest) -> Job:
        if self.prepare_error is not None:
            raise self.prepare_error

        def run(emit: Any, outcome: Outcome, cancel: threading.Event) -> None:
            outcome.reused_tokens = 2 if self.cache_valid else 0
            for i, token in enumerate(self.tokens):
                time.sleep(self.delay)  # one decode step
                if cancel.is_set() or outcome.stop_hit:
                    return
                if i == self.fail_at:
                    raise RuntimeError("the device fell over\nsecond line")
                if token == END_OF_TEXT:
                    outcome.finish = "stop"
                    return
                emit(token)

        def commit(items: list[Any]) -> None:
            self.cache_valid, self.committed = True, items

        def invalidate() -> None:
            self.cache_valid = False

        return Job(
            run,
            prompt_tokens=sum(len(m["content"].split()) for m in request.messages),
            think_open=False,
            max_new_tokens=request.settings.get("max_new_tokens"),
            stop_strings=request.settings.get("stop_strings"),
            commit=commit,
            invalidate=invalidate,
        )


def request(**settings: Any) -> GenerationRequest:
    return GenerationRequest([{"role": "user", "content": "say five words"}], settings)


def turn(engine: ScriptedEngine, cancel: threading.Event | None = None, **settings: Any) -> list[Chunk]:
    return list(engine.stream(request(**settings), cancel or threading.Event()))


def text_of(chunks: list[Chunk]) -> str:
    return "".join(c.text for c in chunks)


def final(chunks: list[Chunk]) -> Chunk:
    assert chunks[-1].finish_reason is not None
    assert all(c.finish_reason is None for c in chunks[:-1])
    return chunks[-1]


def test_a_whole_turn_first_chunk_text_and_stats() -> None:
    engine = ScriptedEngine(["a", "b", "c", END_OF_TEXT])
    chunks = turn(engine)
    assert chunks[0].think_open is False and chunks[0].text == ""
    assert text_of(chunks) == "abc" and [c.tokens for c in chunks[1:-1]] == [1, 2, 3]
    end = final(chunks)
    assert end.finish_reason == "stop" and end.error is None and end.tokens == 3
    st = end.stats
    assert (st.prompt_tokens, st.reused_tokens, st.prefilled_tokens, st.generated_tokens) == (3, 0, 3, 3)
    assert st.finish_reason == "stop" and 0 < st.ttft_s <= st.total_s and st.peak_gpu_mem_bytes is None
    assert engine.cache_valid and engine.committed == ["a", "b", "c"]
    assert final(turn(engine)).stats.reused_tokens == 2  # the kept cache, as the engine reports it


@pytest.mark.parametrize(
    "tokens,settings,reason",
    [
        (["a", END_OF_TEXT, "never"], {}, "stop"),  # the model ended the answer
        (["a", "b", "c", "d"], {"max_new_tokens": 3}, "length"),
        (["a", "b"], {}, "stop"),  # the job ended with no limit reached
    ],
)
def test_finish_reasons(tokens: list[str], settings: dict[str, Any], reason: str) -> None:
    engine = ScriptedEngine(tokens)
    if settings.get("max_new_tokens"):
        engine.tokens = tokens[:3]  # a real engine stops at its limit
    end = final(turn(engine, **settings))
    assert end.finish_reason == end.stats.finish_reason == reason


def test_stop_string_is_cut_from_the_answer_and_ends_the_job() -> None:
    engine = ScriptedEngine(["one", " two", " th", "ree", " four", " five", " six"], delay=0.02)
    chunks = turn(engine, stop_strings=["three"])
    assert text_of(chunks) == "one two " and final(chunks).finish_reason == "stop"
    assert 4 <= final(chunks).stats.generated_tokens < 7  # the job saw stop_hit and ended early
    # A partial match that comes to nothing is released, at the end too.
    chunks = turn(ScriptedEngine(["x", " thr"]), stop_strings="three")
    assert text_of(chunks) == "x thr" and final(chunks).finish_reason == "stop"


def test_cancel_mid_answer_is_prompt_and_keeps_the_cache() -> None:
    engine = ScriptedEngine([f"t{i} " for i in range(200)], delay=0.01)
    cancel = threading.Event()
    chunks, t = [], 0.0
    for chunk in engine.stream(request(), cancel):
        chunks.append(chunk)
        if chunk.tokens == 3:
            cancel.set()
            t = time.perf_counter()
    assert time.perf_counter() - t < 0.5
    end = final(chunks)
    assert end.finish_reason == "interrupted" and end.error is None and 3 <= end.tokens <= 5
    assert engine.cache_valid  # an interrupted turn ended cleanly: its cache is a valid prefix
    assert final(turn(ScriptedEngine(["ok"]))).finish_reason == "stop"


def test_a_turn_abandoned_by_its_caller_stops_the_job_and_drops_the_cache() -> None:
    engine = ScriptedEngine([f"t{i}" for i in range(500)], delay=0.005)
    engine.cache_valid = True
    stream = engine.stream(request(), threading.Event())
    next(stream), next(stream)
    stream.close()  # the caller stopped listening
    assert not engine.cache_valid
    assert final(turn(engine)).finish_reason == "stop"  # the lock was released, the worker is free


def test_prepare_error_is_one_error_chunk() -> None:
    engine = ScriptedEngine(["a"])
    engine.prepare_error = ValueError("the template rejects the system role\nTraceback ...")
    chunks = turn(engine)
    assert len(chunks) == 1 and chunks[0].finish_reason == "error"
    assert chunks[0].error == "ValueError: the template rejects the system role"
    assert chunks[0].stats.finish_reason == "error"
    engine.prepare_error = PromptError("the prompt (9 tokens) does not fit", prompt_tokens=9)
    end = final(turn(engine))
    assert end.error == "the prompt (9 tokens) does not fit" and end.stats.prompt_tokens == 9
    engine.prepare_error = EngineError("cannot connect to x: connection refused")
    assert final(turn(engine)).error == "cannot connect to x: connection refused"  # a user error as it is


def test_job_error_keeps_the_text_so_far_and_drops_the_cache() -> None:
    engine = ScriptedEngine(["a", "b", "c"], fail_at=2)
    engine.cache_valid = True
    chunks = turn(engine)
    end = final(chunks)
    assert text_of(chunks) == "ab" and end.finish_reason == "error" and end.stats.finish_reason == "error"
    assert end.error == "RuntimeError: the device fell over" and not engine.cache_valid
    engine.fail_at = None
    assert final(turn(engine)).finish_reason == "stop"  # the engine survives


def test_a_second_concurrent_turn_is_refused() -> None:
    engine = ScriptedEngine(["a", "b", "c"], delay=0.05)
    first = engine.stream(request(), threading.Event())
    next(first)
    second = turn(engine)
    assert len(second) == 1 and second[0].finish_reason == "error" and "busy" in second[0].error
    assert text_of(list(first)) == "abc"
    assert final(turn(engine)).finish_reason == "stop"


def test_a_job_that_cancel_cannot_reach_is_aborted_and_not_waited_for() -> None:
    """The remote engine's shape: the job blocks in I/O; abort() wakes it, and with wait=False the turn
    ends at once whatever the job does."""
    release = threading.Event()
    aborted: list[float] = []

    def prepare(request: GenerationRequest) -> Job:
        def run(emit: Any, outcome: Outcome, cancel: threading.Event) -> None:
            emit("first")
            release.wait(5)  # blocked where cancel does not reach

        return Job(run, abort=lambda: aborted.append(time.perf_counter()), wait=False, flush=lambda: "!")

    turns = Turns("remote-test", own_threads=True)
    cancel = threading.Event()
    chunks, t = [], 0.0
    for chunk in turns.stream(prepare, request(), cancel):
        chunks.append(chunk)
        if chunk.text == "first":
            cancel.set()
            t = time.perf_counter()
    release.set()
    assert time.perf_counter() - t < 0.5 and aborted and aborted[0] - t < 0.2
    assert text_of(chunks) == "first!" and final(chunks).finish_reason == "interrupted"


def test_stop_matcher_holds_back_a_possible_stop_string() -> None:
    m = StopMatcher(["END", "\n\n"])
    assert m.feed("abc E") == ("abc ", False)
    assert m.feed("N") == ("", False)
    assert m.feed("X") == ("ENX", False)  # not a stop after all: released
    assert m.feed("yy\n") == ("yy", False)
    assert m.feed("\nmore") == ("", True)
    m = StopMatcher(["abc"])
    assert m.feed("xxab") == ("xx", False) and m.flush() == "ab"
    plain = StopMatcher([])
    assert plain.feed("anything") == ("anything", False)


def test_prefill_progress_becomes_chunks_not_tokens() -> None:
    engine = ScriptedEngine([PrefillProgress(64, 100), PrefillProgress(99, 100), "a", "b", END_OF_TEXT])
    chunks = turn(engine)
    assert [c.prefill for c in chunks if c.prefill] == [(64, 100), (99, 100)]
    end = final(chunks)
    assert text_of(chunks) == "ab" and end.tokens == 2 and end.stats.generated_tokens == 2
    assert engine.committed == ["a", "b"]  # the cache's bookkeeping sees generated tokens only


def test_background_work_is_cut_short_by_the_next_turn_and_runs_before_it() -> None:
    """Warming between turns: the next turn cancels the work, waits for its step in flight, then runs; the
    work and the turn never overlap (they share the engine's cache)."""
    engine = ScriptedEngine(["a", "b"])
    events: list[str] = []
    steps = threading.Event()

    def work(cancel: threading.Event) -> None:
        for i in range(200):
            if cancel.is_set():
                events.append("work stopped")
                return
            steps.set()
            time.sleep(0.01)
            events.append(f"step {i}")

    engine._turns.warm(work)
    assert steps.wait(5)
    t0 = time.perf_counter()
    chunks = list(engine.stream(GenerationRequest([{"role": "user", "content": "hi"}]), threading.Event()))
    assert time.perf_counter() - t0 < 1.0  # not the 2 s the work would have taken
    assert "".join(c.text for c in chunks) == "ab"
    assert events[-1] == "work stopped" and len(events) < 200


def test_settle_finish_waits_for_background_work_and_says_how_long() -> None:
    turns = Turns("warm-test")
    done: list[bool] = []
    turns.warm(lambda cancel: (time.sleep(0.2), done.append(not cancel.is_set())))
    waited = turns.settle(finish=True)
    assert done == [True] and waited > 0.1
    assert turns.settle() == 0.0  # nothing left to wait for
