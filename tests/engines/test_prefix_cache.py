"""The prefix-cache policy on its own (no model): what a kept cache keeps for a new prompt, the chunk
schedule it computes the rest on, and what background work computes while the user types."""

from __future__ import annotations

import threading

from qwenchat.engines.job import PrefillProgress
from qwenchat.engines.prefix_cache import PrefixCache, common_prefix_len, shared_prefix, warm_ids


def run_prefill(cache: PrefixCache, ids: list[int], start: int, chunk: int, cancel_after: int | None = None):
    """The chunks computed and the progress emitted; cancel after that many chunks when asked."""
    computed: list[tuple[int, int]] = []
    progress: list[PrefillProgress] = []
    cancel = threading.Event()

    def compute(pos: int, stop: int) -> None:
        computed.append((pos, stop))
        if cancel_after is not None and len(computed) >= cancel_after:
            cancel.set()

    ok = cache.prefill(ids, start, chunk, compute, progress.append, cancel)
    return ok, computed, progress


def test_prefix_helpers():
    assert common_prefix_len([1, 2, 3], [1, 2, 4]) == 2
    assert common_prefix_len([], [1]) == 0
    assert shared_prefix([[1, 2, 3], [1, 2, 4], [1, 2]]) == [1, 2]
    assert shared_prefix([]) == []


def test_the_schedule_puts_boundaries_at_multiples_of_the_chunk_and_leaves_the_last_token():
    cache = PrefixCache()
    ids = list(range(20))
    ok, computed, progress = run_prefill(cache, ids, 5, 8)
    assert ok and computed == [(5, 8), (8, 16), (16, 19)]  # position 19, the last, is generate's
    assert [(p.done, p.total) for p in progress] == [(3, 14), (11, 14), (14, 14)]
    assert cache.aligned == 16 and cache.tail_prompt == ids


def test_a_cancelled_prefill_keeps_what_it_computed_and_is_no_tail():
    cache = PrefixCache()
    ok, computed, _ = run_prefill(cache, list(range(40)), 0, 8, cancel_after=2)
    assert not ok and computed == [(0, 8), (8, 16)]
    assert cache.aligned == 16 and cache.tail_prompt is None


def test_a_new_prompt_keeps_whole_aligned_chunks_of_the_common_prefix_only():
    cache = PrefixCache()
    first = list(range(30))
    run_prefill(cache, first, 0, 8)
    cached = first + [100, 101]  # the answer's tokens, decoded one at a time
    follow_up = cached + [200, 201, 202]
    assert cache.keep(cached, follow_up, 8) == 24  # 30 in common, 24 of them in whole aligned chunks
    assert cache.aligned == 24 and cache.tail_prompt is None
    assert PrefixCache(aligned=24).keep(first, [0, 1, 2, 99], 8) == 0  # 3 in common: no whole chunk


def test_the_same_prompt_again_keeps_all_but_its_last_token():
    cache = PrefixCache()
    ids = list(range(30))
    run_prefill(cache, ids, 0, 8)
    assert cache.keep(ids[:-1], ids, 8) == 29  # a retry: first answer and retry computed alike
    assert cache.tail_prompt is None  # asked once: the next keep follows the aligned rule
    assert cache.keep(ids[:-1], ids, 8) == 24


def test_forget_trusts_nothing():
    cache = PrefixCache(aligned=16, tail_prompt=[1, 2])
    cache.forget()
    assert cache.aligned == 0 and cache.tail_prompt is None
    assert cache.keep([1, 2, 3], [1, 2, 3], 1) == 0


def test_warm_ids_are_the_shared_whole_chunks_and_a_placeholder():
    encoded = [list(range(20)) + [50], list(range(20)) + [60]]
    assert warm_ids(encoded, 8, 0) == list(range(16)) + [0]
    assert warm_ids(encoded, 8, 16) is None  # already computed
    assert warm_ids([[1, 2, 3]], 8, 0) is None  # no whole chunk


class FakeTurns:
    """Runs warm work at once, on this thread."""

    def __init__(self) -> None:
        self.cancel = threading.Event()

    def warm(self, work) -> None:
        work(self.cancel)


def test_warm_fills_what_the_next_prompt_starts_with_and_forgets_on_failure():
    cache = PrefixCache()
    encoded = [list(range(20)) + [50], list(range(20)) + [60]]
    seen: list[list[int]] = []

    def fill(ids: list[int], cancel: threading.Event) -> None:
        seen.append(ids)
        run_prefill(cache, ids, cache.keep([], ids, 8), 8)

    assert cache.warm(FakeTurns(), encoded, 8, fill, cache.forget)
    assert seen == [list(range(16)) + [0]] and cache.aligned == 16
    assert cache.tail_prompt is None  # the placeholder prompt is no retry's
    assert not cache.warm(FakeTurns(), encoded, 8, fill, cache.forget)  # nothing new to compute
    assert not PrefixCache().warm(FakeTurns(), encoded, 8, fill, cache.forget, limit=10)  # too long

    forgot: list[bool] = []

    def broken(ids: list[int], cancel: threading.Event) -> None:
        raise RuntimeError("out of memory")

    assert PrefixCache().warm(FakeTurns(), encoded, 8, broken, lambda: forgot.append(True))
    assert forgot == [True]
