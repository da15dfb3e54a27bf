"""The one rule that makes a turn's tokens independent of what was cached, for both in-process engines.

A position's keys and values depend on the batch it was computed in (bf16 matmuls and llama.cpp's kernels
round differently for different batch shapes), so two computations of a position agree bit for bit only when
it was computed in the same chunk (same start, same end) on top of identical earlier positions. Every prompt
is therefore computed on one schedule, aligned to the conversation's assistant messages, which are the same
whether a prompt is computed turn by turn or from scratch (a resume, a batch run, `--no-cache-reuse`):

- the prompt is cut into segments where each assistant message's text starts (after its header) and where it
  ends; what lies between two answers (a user message, tool results, the next header) is one segment, and so
  is each answer. Rendering the conversation's prefixes tells where these bounds are;
- each segment is computed in chunks of at most `chunk` tokens counted from its own start;
- a segment that ends in an assistant header computes its last token alone: the prompt's last token is that
  token, which generate computes, so a retry, which reuses everything before it, gets the same logits, and the
  same segment in a later prompt is computed the same way;
- the cache keeps a log of the chunks it computed on this schedule, and a new prompt keeps the cached
  positions its own schedule would compute in the very same chunks (and no further than the tokens agree).

An answer is decoded a token at a time, so its keys and values are not the schedule's, nor is the header's
last token generate computed: the next prompt computes them again, and `warm` does that while the user types.
A new turn then computes its own segment only: its message and the header, in one chunk and the last token.
No torch here: the engines own their caches, this module only says what of them to keep.
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


def schedule(
    length: int, bounds: list[int], chunk: int, alone: frozenset[int] | set[int] = frozenset()
) -> list[Span]:
    """The chunks a prompt of `length` tokens is computed in: each segment (from one bound to the next) in
    chunks of at most `chunk` counted from the segment's start; a segment ending at a bound in `alone` (an
    assistant header's end) computes its last token alone; the prompt's last token is left to generate."""
    end = length - 1
    edges = [0, *sorted({b for b in bounds if 0 < b < end}), end]
    spans: list[Span] = []
    for start, stop in zip(edges, edges[1:], strict=False):
        last = stop - 1 if stop in alone and stop - 1 > start else stop
        pos = start
        while pos < last:
            spans.append((pos, min(pos + chunk, last)))
            pos = spans[-1][1]
        if last < stop:
            spans.append((last, stop))
    return spans


@dataclass(frozen=True)
class Bounds:
    """Where a prompt's segments start, and those of them that follow an assistant header (the segment
    before computes its last token alone there)."""

    starts: list[int]
    alone: frozenset[int] = frozenset()

    def plan(self, ids: list[int], chunk: int) -> Plan:
        return Plan(ids, schedule(len(ids), self.starts, chunk, self.alone))


@dataclass
class Plan:
    """A prompt's token ids and the chunks its schedule computes them in."""

    ids: list[int]
    spans: list[Span]

    @property
    def end(self) -> int:
        return self.spans[-1][1] if self.spans else 0


def _ids_digest(ids: list[int]) -> int:
    return hash(tuple(ids))  # ints and tuples hash the same in every process; image keys exceed 64 bits


class MessageBounds:
    """Where each assistant message's text starts (after its header) and ends in a request's rendered prompt:
    the length of the prompt the messages before it render to with a generation prompt, and with it without
    one, where that agrees with the whole prompt. `encode(request, generation_prompt)` renders and tokenizes
    a request (as the cache compares it). A prefix seen before is remembered by its length and digest (not its
    ids: a long conversation would hold every prefix of itself), so a turn renders only its new messages, and
    a prefix the prompt no longer starts with (a template that rewrites history) is rendered again."""

    def __init__(self, encode: Callable[[GenerationRequest, bool], list[int]], memo: int = 512) -> None:
        self._encode = encode
        self._memo: OrderedDict[tuple[str, bool], tuple[int, int] | None] = OrderedDict()
        self._size = memo

    def _bound(
        self, request: GenerationRequest, ids: list[int], k: int, key: str, generation_prompt: bool
    ) -> int | None:
        """Where the prompt of the first k messages stops agreeing with `ids`; None when it cannot render."""
        memo_key = (key, generation_prompt)
        if memo_key in self._memo:
            self._memo.move_to_end(memo_key)
            known = self._memo[memo_key]
            if known is None:
                return None
            n, digest = known
            if n <= len(ids) and _ids_digest(ids[:n]) == digest:
                return n  # the prompt starts with that prefix, as it did
        try:
            sub = replace(request, messages=request.messages[:k], continue_final=False)
            prefix = self._encode(sub, generation_prompt)
        except Exception:  # a template that refuses a prefix (no user message yet): no bound there
            prefix = None
        self._memo[memo_key] = (len(prefix), _ids_digest(prefix)) if prefix else None
        if len(self._memo) > self._size:
            self._memo.popitem(last=False)
        return common_prefix_len(prefix, ids) if prefix else None

    def __call__(self, request: GenerationRequest, ids: list[int]) -> Bounds:
        messages = request.messages
        # what else renders the prompt: tools, template variables, and settings (a vision engine's pixel
        # budget decides how many tokens an image takes)
        head = json.dumps(
            [request.tools, request.template_kwargs, request.settings], sort_keys=True, default=str
        )
        digest = hashlib.sha256(head.encode())
        keys = [digest.hexdigest()]  # keys[k]: the first k messages, with what else renders them
        for m in messages:
            digest.update(json.dumps(m, sort_keys=True, default=str).encode())
            keys.append(digest.hexdigest())
        starts: set[int] = set()
        alone: set[int] = set()
        for k, m in enumerate(messages):
            if m.get("role") != "assistant":
                continue
            text_start = self._bound(request, ids, k, keys[k], True)  # ... up to this answer's header
            if text_start is not None:
                starts.add(text_start)
                alone.add(text_start)
            if request.continue_final and k == len(messages) - 1:
                break  # the answer being continued ends the prompt
            end = self._bound(request, ids, k + 1, keys[k + 1], False)  # ... through this answer
            if end is not None:
                starts.add(end)
        inside = {b for b in starts if 0 < b < len(ids)}
        return Bounds(sorted(inside), frozenset(alone & inside))


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
