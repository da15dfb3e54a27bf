"""The one rule that makes a turn's tokens independent of what was cached, for both in-process engines.

A position's keys and values depend on the batch it was computed in (bf16 matmuls and llama.cpp's kernels
round differently for different batch shapes), so two computations of a position agree bit for bit only when
it was computed in the same chunk (same start, same end) on top of identical earlier positions. Every prompt
is therefore computed on one schedule, aligned to the conversation's messages, which are the same whether a
prompt is computed turn by turn or from scratch (a resume, a batch run, `--no-cache-reuse`):

- the prompt is cut into segments where its messages start (rendering the conversation's prefixes tells
  where), and each segment is computed in chunks of at most `chunk` tokens counted from its own start;
- the prompt's last token is left out of its last segment: generate computes it alone, so a retry, which
  reuses everything before it, gets the same logits;
- the cache keeps a log of the chunks it computed on this schedule, and a new prompt keeps the cached
  positions its own schedule would compute in the very same chunks (and no further than the tokens agree).

An answer is decoded a token at a time, so its keys and values are not the schedule's: the next prompt
computes the answer's segment again, and `warm` does that while the user types. A new turn then computes its
own segment only. No torch here: the engines own their caches, this module only says what of them to keep.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from qwenchat.engines.job import PrefillProgress

if TYPE_CHECKING:
    from qwenchat.engines.api import GenerationRequest
    from qwenchat.engines.turn import Turns

Span = tuple[int, int]  # a chunk: positions [start, stop) computed in one forward pass


def common_prefix_len(a: list[int], b: list[int]) -> int:
    """How many leading tokens two id lists share: the part of a prompt a kept KV cache already holds."""
    n = min(len(a), len(b))
    if a[:n] == b[:n]:
        return n
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


def schedule(length: int, bounds: list[int], chunk: int) -> list[Span]:
    """The chunks a prompt of `length` tokens is computed in: each segment (from one bound to the next) in
    chunks of at most `chunk` counted from the segment's start, the last token left to generate."""
    end = length - 1
    edges = [0, *sorted({b for b in bounds if 0 < b < end}), end]
    spans: list[Span] = []
    for start, stop in zip(edges, edges[1:], strict=False):
        pos = start
        while pos < stop:
            spans.append((pos, min(pos + chunk, stop)))
            pos = spans[-1][1]
    return spans


@dataclass
class Plan:
    """A prompt's token ids and the chunks its schedule computes them in."""

    ids: list[int]
    spans: list[Span]

    @property
    def end(self) -> int:
        return self.spans[-1][1] if self.spans else 0


class MessageBounds:
    """Where each message of a request starts in its rendered prompt: the length of the prompt the
    conversation's first k messages render to (no generation prompt), where it agrees with the whole prompt.
    `encode(request)` renders and tokenizes a request without a generation prompt. Prefixes seen before are
    remembered, so a turn renders only its new messages."""

    def __init__(self, encode: Callable[[GenerationRequest], list[int]], memo: int = 512) -> None:
        self._encode = encode
        self._memo: OrderedDict[str, list[int] | None] = OrderedDict()
        self._size = memo

    def __call__(self, request: GenerationRequest, ids: list[int]) -> list[int]:
        messages = request.messages
        last = len(messages) - 1 if request.continue_final else len(messages)  # a continued answer: its own
        head = json.dumps([request.tools, request.template_kwargs], sort_keys=True, default=str)
        digest = hashlib.sha256(head.encode())
        bounds: list[int] = []
        for k in range(1, last + 1):
            digest.update(json.dumps(messages[k - 1], sort_keys=True, default=str).encode())
            key = digest.hexdigest()
            if key in self._memo:
                self._memo.move_to_end(key)
                prefix = self._memo[key]
            else:
                try:
                    sub = replace(request, messages=messages[:k], continue_final=False)
                    prefix = self._encode(sub)
                except Exception:  # a template that refuses a prefix (no user message yet): no bound there
                    prefix = None
                self._memo[key] = prefix
                if len(self._memo) > self._size:
                    self._memo.popitem(last=False)
            if prefix:
                bounds.append(common_prefix_len(prefix, ids))
        return sorted({b for b in bounds if 0 < b < len(ids)})


@dataclass
class PrefixCache:
    """What an engine's kept cache holds beyond its token ids: the chunks it computed on the schedule, in
    order from position 0. Positions past them (an answer's tokens) are never kept for another prompt."""

    log: list[Span] = field(default_factory=list)

    @property
    def computed(self) -> int:
        """How many leading positions were computed on the schedule."""
        return self.log[-1][1] if self.log else 0

    def keep(self, cached: list[int], plan: Plan) -> int:
        """How many leading cached positions this prompt's schedule would compute the same way: its chunks
        that the log holds too, over tokens that agree. The engine drops the rest of its cache; the log then
        describes the kept part."""
        common = common_prefix_len(cached, plan.ids)
        n = 0
        while (
            n < len(self.log)
            and n < len(plan.spans)
            and self.log[n] == plan.spans[n]
            and plan.spans[n][1] <= common
        ):
            n += 1
        del self.log[n:]
        return self.computed

    def prefill(
        self,
        plan: Plan,
        start: int,
        compute: Callable[[int, int], None],
        emit: Callable[[Any], None],
        cancel: threading.Event,
    ) -> bool:
        """Compute the plan's chunks from `start` (where `keep` left off) with `compute(pos, stop)`, checking
        `cancel` between chunks and emitting PrefillProgress after each; False when cancelled. What was
        computed stays cached and logged."""
        todo = [s for s in plan.spans if s[0] >= start]
        total = plan.end - start
        for pos, stop in todo:
            if cancel.is_set():
                return False
            compute(pos, stop)
            self.log.append((pos, stop))
            emit(PrefillProgress(stop - start, total))
        return not cancel.is_set()

    def forget(self) -> None:
        """The cache is gone (reset, an error, another adapter): nothing of it is trusted."""
        self.log = []

    def warm_plan(self, plans: list[Plan]) -> Plan | None:
        """What background work should compute: the chunks every one of `plans` (the next prompt with
        different stand-ins for the message not yet typed) starts with, over tokens they share; None when
        the log holds them already."""
        if not plans:
            return None
        shared = shared_prefix([p.ids for p in plans])
        spans: list[Span] = []
        for i, span in enumerate(plans[0].spans):
            if span[1] > len(shared) or any(i >= len(p.spans) or p.spans[i] != span for p in plans[1:]):
                break
            spans.append(span)
        if not spans or self.log[: len(spans)] == spans:
            return None
        return Plan(shared[: spans[-1][1]], spans)

    def warm(
        self,
        turns: Turns,
        plans: list[Plan],
        fill: Callable[[Plan, threading.Event], object],
        forget: Callable[[], None],
        *,
        limit: int | None = None,
    ) -> bool:
        """While the user types: have `turns` run `fill(plan, cancel)` (keep + prefill, as a turn would) on
        the chunks every one of `plans` starts with (`warm_plan`): the last answer's segment, computed as the
        next prompt computes it, so the next turn computes its own message only. A turn that comes first
        cuts it short and computes the rest. False when there is nothing to do (or more than `limit`)."""
        plan = self.warm_plan(plans)
        if plan is None or (limit is not None and len(plan.ids) > limit):
            return False

        def work(cancel: threading.Event) -> None:
            try:
                fill(plan, cancel)
            except Exception:  # a best effort: the next turn computes it, from scratch if need be
                forget()

        turns.warm(work)
        return True
