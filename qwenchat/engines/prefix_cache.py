"""The one rule that makes a turn's tokens independent of what was cached, for both in-process engines.

A position's keys and values depend on the batch it was computed in (bf16 matmuls, llama.cpp's kernels
round differently for different batch shapes), so every prompt is computed on one schedule: the prompt but
its last token in chunks whose boundaries lie at multiples of the chunk size (absolute positions), then the
last token alone (generate does it). A kept cache is only trusted where a new prompt's schedule would have
computed it the same way: the whole aligned chunks of the common prefix, or, for the very same prompt (a
retry), all but its last token. Tokens decoded one at a time are never kept: a new prompt computes them in
chunks. No torch here: the engines own their caches, this module only says what of them to keep.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from qwenchat.engines.job import PrefillProgress

if TYPE_CHECKING:
    from qwenchat.engines.turn import Turns


def common_prefix_len(a: list[int], b: list[int]) -> int:
    """How many leading tokens two id lists share: the part of a prompt a kept KV cache already holds."""
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def shared_prefix(seqs: list[list[int]]) -> list[int]:
    """The leading tokens all of `seqs` share."""
    if not seqs:
        return []
    n = min(common_prefix_len(seqs[0], s) for s in seqs)
    return seqs[0][:n]


def warm_ids(encoded: list[list[int]], chunk: int, aligned: int) -> list[int] | None:
    """What background work should compute: the whole aligned chunks every one of `encoded` (the next prompt
    with different stand-ins for the message not yet typed) starts with, and a placeholder last token (the
    schedule never computes a prompt's last token in a chunk); None when the cache already holds them."""
    known = shared_prefix(encoded)
    target = len(known) // chunk * chunk
    return known[:target] + [0] if target > aligned else None


@dataclass
class PrefixCache:
    """What an engine's kept cache holds beyond its token ids: how far it was computed in whole aligned
    chunks, and the prompt whose partial last chunk it holds. The chunk size is the engine's (tests and
    benchmarks change it), passed to each call."""

    aligned: int = 0  # leading cached positions computed in whole aligned chunks
    tail_prompt: list[int] | None = None  # the prompt whose partial last chunk the cache holds

    def keep(self, cached: list[int], ids: list[int], chunk: int) -> int:
        """How many leading cached positions this prompt's schedule would compute the same way; the engine
        drops the rest of its cache. The bookkeeping now describes the kept part."""
        common = common_prefix_len(cached, ids)
        if self.tail_prompt == ids and common >= len(ids) - 1:
            keep = len(ids) - 1
        else:
            keep = min(common, self.aligned) // chunk * chunk
        self.aligned, self.tail_prompt = min(self.aligned, keep), None
        return keep

    def prefill(
        self,
        ids: list[int],
        start: int,
        chunk: int,
        compute: Callable[[int, int], None],
        emit: Callable[[Any], None],
        cancel: threading.Event,
    ) -> bool:
        """Compute ids[start:-1] with `compute(pos, stop)`, chunk by chunk (boundaries at multiples of
        `chunk`), checking `cancel` between chunks and emitting PrefillProgress after each; False when
        cancelled. What was computed stays cached."""
        end = len(ids) - 1
        pos = start
        while pos < end:
            if cancel.is_set():
                return False
            stop = min((pos // chunk + 1) * chunk, end)
            compute(pos, stop)
            if stop % chunk == 0:
                self.aligned = stop
            pos = stop
            emit(PrefillProgress(stop - start, end - start))
        self.tail_prompt = ids
        return not cancel.is_set()

    def forget(self) -> None:
        """The cache is gone (reset, an error, another adapter): nothing of it is trusted."""
        self.aligned, self.tail_prompt = 0, None

    def warm(
        self,
        turns: Turns,
        encoded: list[list[int]],
        chunk: int,
        fill: Callable[[list[int], threading.Event], object],
        forget: Callable[[], None],
        *,
        limit: int | None = None,
    ) -> bool:
        """While the user types: have `turns` run `fill(ids, cancel)` (keep + prefill, as a turn would) on the
        whole aligned chunks every one of `encoded` (the next prompt, each with another stand-in for the
        message not yet typed) starts with, so the next turn finds them cached. They are what that turn's
        schedule would compute, so its tokens stay the same; only a retry of the last prompt then recomputes
        its partial last chunk. False when there is nothing to do (or more than `limit` tokens)."""
        ids = warm_ids(encoded, chunk, self.aligned)
        if ids is None or (limit is not None and len(ids) > limit):
            return False

        def work(cancel: threading.Event) -> None:
            try:
                fill(ids, cancel)
                self.tail_prompt = None  # ids is no prompt: a retry must not take its tail as its own
            except Exception:  # a best effort: the next turn computes it, from scratch if need be
                forget()

        turns.warm(work)
        return True
