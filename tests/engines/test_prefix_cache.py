"""The prefix-cache policy on its own (no model): the message-aligned schedule, what a kept cache keeps for a
new prompt, and what background work computes while the user types."""

from __future__ import annotations

import threading

from qwenchat.engines.api import GenerationRequest
from qwenchat.engines.job import PrefillProgress
from qwenchat.engines.prefix_cache import (
    Bounds,
    MessageBounds,
    Plan,
    PrefixCache,
    common_prefix_len,
    schedule,
    shared_prefix,
)


def run_prefill(cache: PrefixCache, plan: Plan, start: int, cancel_after: int | None = None):
    """The chunks computed and the progress emitted; cancel after that many chunks when asked."""
    computed: list[tuple[int, int]] = []
    progress: list[PrefillProgress] = []
    cancel = threading.Event()

    def compute(pos: int, stop: int) -> None:
        computed.append((pos, stop))
        if cancel_after is not None and len(computed) >= cancel_after:
            cancel.set()

    ok = cache.prefill(plan, start, compute, progress.append, cancel)
    return ok, computed, progress


def plan_of(ids: list[int], bounds: list[int], chunk: int = 8) -> Plan:
    return Plan(ids, schedule(len(ids), bounds, chunk))


def test_prefix_helpers():
    assert common_prefix_len([1, 2, 3], [1, 2, 4]) == 2
    assert common_prefix_len([], [1]) == 0
    assert common_prefix_len([1, 2], [1, 2, 3]) == 2
    assert shared_prefix([[1, 2, 3], [1, 2, 4], [1, 2]]) == [1, 2]
    assert shared_prefix([]) == []


def test_each_segment_is_chunked_from_its_own_start_and_the_last_token_is_left():
    # bounds at 5 and 22; a 30-token prompt; chunks of 8
    assert schedule(30, [5, 22], 8) == [(0, 5), (5, 13), (13, 21), (21, 22), (22, 29)]
    assert schedule(30, [], 8) == [(0, 8), (8, 16), (16, 24), (24, 29)]
    assert schedule(30, [29, 40, 0], 8) == schedule(30, [], 8)  # bounds past the end or at 0 mean nothing
    assert schedule(1, [], 8) == []  # one token: generate computes it


def test_a_segment_ending_in_an_assistant_header_computes_its_last_token_alone():
    # an answer's text starts at 12 (after its header) and ends at 20
    assert schedule(30, [12, 20], 8, alone={12}) == [(0, 8), (8, 11), (11, 12), (12, 20), (20, 28), (28, 29)]
    # the same segment in the prompt that asked for that answer: its last token is generate's
    assert schedule(12, [], 8) == [(0, 8), (8, 11)]
    assert schedule(30, [1], 8, alone={1}) == [(0, 1), (1, 9), (9, 17), (17, 25), (25, 29)]


def test_prefill_computes_the_plan_from_start_logs_it_and_reports_progress():
    cache = PrefixCache()
    plan = plan_of(list(range(20)), [6])
    ok, computed, progress = run_prefill(cache, plan, 0)
    assert ok and computed == [(0, 6), (6, 14), (14, 19)]  # position 19, the last, is generate's
    assert [(p.done, p.total) for p in progress] == [(6, 19), (14, 19), (19, 19)]
    assert cache.log == computed and cache.computed == 19


def test_a_cancelled_prefill_keeps_what_it_computed():
    cache = PrefixCache()
    ok, computed, _ = run_prefill(cache, plan_of(list(range(40)), []), 0, cancel_after=2)
    assert not ok and computed == [(0, 8), (8, 16)] and cache.log == computed


def test_a_new_turn_keeps_the_earlier_messages_and_recomputes_the_answer_segment():
    cache = PrefixCache()
    first = list(range(30))  # system 0..10, user 10..27, assistant header 27..30
    run_prefill(cache, plan_of(first, [10, 27]), 0)
    cached = first + [100, 101]  # the answer's tokens, decoded one at a time
    follow_up = cached + [102, 200, 201, 202, 300, 301]  # answer ends at 33, next user 33..37, header 37..
    plan = plan_of(follow_up, [10, 27, 33, 37])
    assert cache.keep(cached, plan) == 27  # the header's chunk was cut short of its answer: computed again
    assert cache.log == [(0, 8), (8, 10), (10, 18), (18, 26), (26, 27)]


def test_the_same_prompt_again_keeps_all_but_its_last_token():
    cache = PrefixCache()
    ids = list(range(30))
    run_prefill(cache, plan_of(ids, [10, 27]), 0)
    assert cache.keep(ids[:-1], plan_of(ids, [10, 27])) == 29  # a retry: first answer and retry alike
    assert cache.keep(ids[:-1], plan_of(ids, [10, 27])) == 29  # and again


def test_other_bounds_or_other_tokens_keep_only_what_agrees():
    cache = PrefixCache()
    ids = list(range(30))
    run_prefill(cache, plan_of(ids, [10]), 0)
    assert cache.keep(ids, plan_of(ids, [12])) == 8  # (8, 10) against (8, 12): computed differently
    cache = PrefixCache()
    run_prefill(cache, plan_of(ids, [10]), 0)
    other = ids[:13] + [99] * 10
    assert cache.keep(ids, plan_of(other, [10])) == 10  # (10, 18) holds token 13, which differs


def test_forget_trusts_nothing():
    cache = PrefixCache()
    run_prefill(cache, plan_of(list(range(20)), []), 0)
    cache.forget()
    assert cache.log == [] and cache.keep(list(range(20)), plan_of(list(range(20)), [])) == 0


class FakeTurns:
    """Runs warm work at once, on this thread."""

    def __init__(self) -> None:
        self.cancel = threading.Event()

    def warm(self, work) -> None:
        work(self.cancel)


def test_warm_computes_the_chunks_every_stand_in_prompt_starts_with():
    cache = PrefixCache()
    run_prefill(cache, plan_of(list(range(12)), [4]), 0)
    # The next prompt with two stand-ins: the last answer's segment 4..20, then user messages of two lengths
    plans = [plan_of(list(range(20)) + [50, 51, 52], [4, 20]), plan_of(list(range(20)) + [60] * 9, [4, 20])]
    assert cache.warm_plan(plans) == Plan(list(range(20)), [(0, 4), (4, 12), (12, 20)])
    seen: list[Plan] = []

    def fill(plan: Plan, cancel: threading.Event) -> None:
        seen.append(plan)
        run_prefill(cache, plan, cache.keep(list(range(11)), plan))

    assert cache.warm(FakeTurns(), plans, fill, cache.forget)
    assert seen[0].spans == [(0, 4), (4, 12), (12, 20)] and cache.computed == 20
    assert not cache.warm(FakeTurns(), plans, fill, cache.forget)  # nothing new to compute
    assert not PrefixCache().warm(FakeTurns(), plans, fill, cache.forget, limit=10)  # too long

    forgot: list[bool] = []

    def broken(plan: Plan, cancel: threading.Event) -> None:
        raise RuntimeError("out of memory")

    assert PrefixCache().warm(FakeTurns(), plans, broken, lambda: forgot.append(True))
    assert forgot == [True]


def test_message_bounds_are_where_each_answer_starts_and_ends():
    calls: list[tuple[int, bool]] = []

    def encode(request: GenerationRequest, generation_prompt: bool) -> list[int]:  # a char a token
        calls.append((len(request.messages), generation_prompt))
        text = "".join(f"<{m['role'][0]}>{m['content']}." for m in request.messages)
        return [ord(c) for c in text + ("<a>" if generation_prompt else "")]

    bounds = MessageBounds(encode)
    messages = [
        {"role": "system", "content": "sys"},  # <s>sys. 0..7
        {"role": "user", "content": "hi"},  # <u>hi. 7..13
        {"role": "assistant", "content": "hello"},  # <a> 13..16, hello. 16..22
        {"role": "user", "content": "more"},  # <u>more. 22..30, then <a>
    ]
    request = GenerationRequest(messages)
    ids = encode(request, True)
    calls.clear()
    assert bounds(request, ids) == Bounds([16, 22], frozenset({16}))
    assert calls == [(2, True), (3, False)]
    longer = GenerationRequest(
        [*messages, {"role": "assistant", "content": "ok"}, {"role": "user", "content": "x"}]
    )
    ids = encode(longer, True)
    calls.clear()
    assert bounds(longer, ids) == Bounds([16, 22, 33, 36], frozenset({16, 33}))
    assert calls == [(4, True), (5, False)]  # the earlier prefixes were remembered
    continued = GenerationRequest([*messages, {"role": "assistant", "content": "part"}], continue_final=True)
    ids = encode(continued, False)[:-1]  # the answer being continued, without its end
    assert bounds(continued, ids) == Bounds([16, 22, 33], frozenset({16, 33}))


def test_a_prefix_the_template_refuses_gives_no_bound():
    def encode(request: GenerationRequest, generation_prompt: bool) -> list[int]:
        if len(request.messages) < 2:
            raise ValueError("a conversation must have a user message")
        return list(range(len(request.messages) * 5 + generation_prompt))

    request = GenerationRequest(
        [
            {"role": "assistant", "content": "a"},
            {"role": "user", "content": "u"},
            {"role": "assistant", "content": "b"},
        ]
    )
    assert MessageBounds(encode)(request, list(range(20))) == Bounds([11, 15], frozenset({11}))


def test_a_remembered_prefix_is_rendered_again_when_the_prompt_no_longer_starts_with_it():
    rewrite = {"on": False}
    calls: list[int] = []

    def encode(request: GenerationRequest, generation_prompt: bool) -> list[int]:
        calls.append(len(request.messages))
        out = []
        for m in request.messages:  # a template that may render earlier answers shorter (as Qwen3 does)
            text = m["content"][:2] if rewrite["on"] and m["role"] == "assistant" else m["content"]
            out += [ord(c) for c in f"<{m['role'][0]}>{text}."]
        return out + ([ord(c) for c in "<a>"] if generation_prompt else [])

    bounds = MessageBounds(encode)
    request = GenerationRequest(
        [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "hello"},
            {"role": "user", "content": "x"},
        ]
    )
    first = bounds(request, encode(request, True))
    calls.clear()
    assert bounds(request, encode(request, True)) == first and calls == [3]  # the prefixes: remembered
    rewrite["on"] = True
    calls.clear()
    rewritten = bounds(request, encode(request, True))
    assert calls == [3, 2] and rewritten != first  # the answer's end moved: that prefix rendered again
    calls.clear()
    other = GenerationRequest(request.messages, {"max_new_tokens": 5})  # other settings may render otherwise
    bounds(other, encode(other, True))
    assert calls == [3, 1, 2]
