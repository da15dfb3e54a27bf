"""Speculative decoding (prompt lookup, a draft model): answers stay exact, counts reach :stats."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from qwenchat.engines.api import GenerationRequest, TurnStats
from qwenchat.engines.speculative import START_LENGTH, DraftStats, find_draft

CODE = (
    "def add(a, b):\n    return a + b\n\ndef mul(a, b):\n    result = 0\n"
    "    for _ in range(b):\n        result = add(result, a)\n    return result\n"
)
REWRITE = [{"role": "user", "content": f"Rewrite this with type hints:\n```python\n{CODE}```"}]


def ask(engine: Any, messages: list[dict[str, str]], **settings: Any) -> tuple[str, TurnStats]:
    text, stats = "", None
    for chunk in engine.stream(GenerationRequest(messages, settings, seed=7), threading.Event()):
        assert chunk.error is None, chunk.error
        text += chunk.text
        stats = chunk.stats or stats
    assert stats is not None
    return text, stats


def near_tie_where_they_part(engine: Any, plain: str, other: str) -> float:
    """The gap in logits between the plain greedy answer's first and second choice at the first token where
    `other` leaves it (recorded by a plain run with probabilities on)."""
    request = GenerationRequest(REWRITE, {"do_sample": False, "max_new_tokens": 60}, seed=7, probs_k=2)
    probs = [p for chunk in engine.stream(request, threading.Event()) for p in chunk.probs or []]
    assert "".join(p.text for p in probs) == plain
    text = ""
    for p in probs:
        if not other.startswith(text + p.text):
            return p.top[0].logprob - p.top[1].logprob
        text += p.text
    raise AssertionError(f"{other!r} does not leave {plain!r}")


def test_find_draft_takes_the_latest_longest_match() -> None:
    tokens = [1, 2, 3, 9, 1, 2, 3, 7, 8, 5, 2, 3]
    assert find_draft(tokens, 2) == [7, 8]  # "2 3" last seen before 7 8
    assert find_draft(tokens, 10) == [7, 8, 5, 2, 3]
    assert find_draft([4, 5, 6], 3) == []
    assert find_draft([5, 5], 3) == [5]


def test_drafts_grow_while_accepted_and_shrink_after_a_miss() -> None:
    stats = DraftStats(limit=8)
    assert stats.length == START_LENGTH
    for want in (4, 6, 8, 8):  # every drafted token accepted: longer drafts, up to the limit
        stats.record(stats.length, stats.length)
        assert stats.length == want
    stats.record(8, 3)  # a miss after 3: the next draft is what was accepted plus one
    assert stats.length == 4
    stats.record(4, 0)
    assert stats.length == 1
    assert (stats.drafted, stats.accepted) == (2 + 4 + 6 + 8 + 8 + 4, 2 + 4 + 6 + 8 + 3)
    assert DraftStats(limit=1).length == 1  # never longer than the user's N


def test_a_one_token_match_drafts_nothing() -> None:
    tokens = [1, 2, 3, 4, 5, 9, 2]  # only "2" recurs: too weak a guess to pay for its check
    assert find_draft(tokens, 4) == [3, 4, 5, 9]  # found as a one-token match
    assert find_draft(tokens, 4, min_ngram=2) == []
    assert DraftStats(limit=8, length=4).draft(tokens, 10) == []
    strong = [1, 2, 3, 4, 5, 9, 1, 2]  # "1 2" recurs: the whole draft
    assert DraftStats(limit=8, length=4).draft(strong, 10) == [3, 4, 5, 9]
    assert DraftStats(limit=8, length=4).draft(strong, 2) == [3, 4]  # room left in the answer


def test_a_draft_model_is_only_counted() -> None:
    stats = DraftStats()  # limit 0: the draft model's own schedule decides lengths
    stats.record(5, 5)
    stats.record(5, 0)
    assert (stats.drafted, stats.accepted, stats.length) == (10, 5, START_LENGTH)


def test_stats_line_shows_drafts(out) -> None:
    out.stats(TurnStats(generated_tokens=10, drafted_tokens=20, accepted_tokens=15))
    assert "drafted 20, accepted 15 (75%)" in out.buf.getvalue()


@pytest.fixture(scope="module")
def tiny_engine(tiny_model):
    from qwenchat.engines.transformers.engine import TransformersEngine

    model, tok = tiny_model
    engine = TransformersEngine(model, tok, "tiny")
    engine.prefill_chunk = 16  # short prompts still have whole chunks for the next turn to keep
    return engine


def test_lookup_is_exact_and_counted_on_a_tiny_model(tiny_engine) -> None:
    plain, _ = ask(tiny_engine, REWRITE, do_sample=False, max_new_tokens=48)
    fast, stats = ask(tiny_engine, REWRITE, do_sample=False, max_new_tokens=48, prompt_lookup_num_tokens=6)
    assert fast == plain
    assert stats.drafted_tokens is not None and stats.drafted_tokens > 0
    # a second turn reuses the cache and still matches an answer computed from scratch
    follow = [*REWRITE, {"role": "assistant", "content": fast}, {"role": "user", "content": "Again."}]
    again, stats2 = ask(tiny_engine, follow, do_sample=False, max_new_tokens=32, prompt_lookup_num_tokens=6)
    assert stats2.reused_tokens > 0
    tiny_engine.reset()
    assert ask(tiny_engine, follow, do_sample=False, max_new_tokens=32)[0] == again


def test_draft_model_is_exact_and_refused_with_another_vocab(tiny_engine, tiny_model) -> None:
    from qwenchat.engines.api import EngineError
    from qwenchat.engines.speculative import check_same_vocab

    model, tok = tiny_model
    plain, _ = ask(tiny_engine, REWRITE, do_sample=False, max_new_tokens=24)
    tiny_engine.draft_model = model  # the model as its own draft: every draft is accepted
    try:
        drafted, stats = ask(tiny_engine, REWRITE, do_sample=False, max_new_tokens=24)
    finally:
        tiny_engine.draft_model = None
    assert drafted == plain
    assert stats.drafted_tokens and stats.accepted_tokens == stats.drafted_tokens

    class Other:
        def get_vocab(self) -> dict[str, int]:
            return {"a": 0}

    with pytest.raises(EngineError, match="tokenizer differs"):
        check_same_vocab(tok, Other(), "other/model")


def test_llamacpp_lookup_gives_the_same_answer(demo_gguf_path) -> None:
    from qwenchat.engines.llamacpp.engine import LlamaCppEngine

    engine = LlamaCppEngine(str(demo_gguf_path), n_ctx=1024)
    plain, _ = ask(engine, REWRITE, do_sample=False, max_new_tokens=60)
    fast, stats = ask(engine, REWRITE, do_sample=False, max_new_tokens=60, prompt_lookup_num_tokens=6)
    assert stats.drafted_tokens and stats.accepted_tokens
    # Checked drafts are positions computed in a batch, whose Q4 logits differ from one position's by up to
    # ~0.26 on an AVX-512 CPU and by other amounts with other kernels: greedy lookup keeps to the plain
    # answer up to the first near-tie, and is the same answer every time.
    if fast != plain:
        assert near_tie_where_they_part(engine, plain, fast) < 1.0
    assert ask(engine, REWRITE, do_sample=False, max_new_tokens=60, prompt_lookup_num_tokens=6)[0] == fast
    # Sampled: the Q4 GGUF's logits for a batch differ from one position's by up to ~0.3 (other kernels), so
    # a sampled answer with lookup may differ from one without; with the same seed it is the same each time.
    sampled, _ = ask(engine, REWRITE, max_new_tokens=30, temperature=0.7, prompt_lookup_num_tokens=6)
    assert ask(engine, REWRITE, max_new_tokens=30, temperature=0.7, prompt_lookup_num_tokens=6)[0] == sampled


def test_lookup_and_self_draft_are_exact_on_the_demo_model_in_float32(demo_f32) -> None:
    from qwenchat.engines.transformers.engine import TransformersEngine

    loaded = demo_f32
    engine = TransformersEngine(loaded.model, loaded.tokenizer, "demo")
    plain, _ = ask(engine, REWRITE, do_sample=False, max_new_tokens=40)
    fast, stats = ask(engine, REWRITE, do_sample=False, max_new_tokens=40, prompt_lookup_num_tokens=10)
    assert fast == plain and stats.accepted_tokens
    engine.draft_model = loaded.model  # the demo model drafting for itself
    assert ask(engine, REWRITE, do_sample=False, max_new_tokens=40)[0] == plain


def test_lookup_honours_stop_strings_and_ctrl_c(tiny_engine) -> None:
    plain, _ = ask(tiny_engine, REWRITE, do_sample=False, max_new_tokens=48)
    stop = plain[len(plain) // 2 : len(plain) // 2 + 3]  # a random model's text; met mid-answer
    assert len(stop) == 3
    cut = plain[: plain.find(stop)]  # the answer ends before the first stop string in it
    fast, stats = ask(
        tiny_engine,
        REWRITE,
        do_sample=False,
        max_new_tokens=48,
        stop_strings=[stop],
        prompt_lookup_num_tokens=6,
    )
    assert fast == cut and stop not in fast and stats.finish_reason == "stop"

    cancel = threading.Event()
    request = GenerationRequest(
        REWRITE, {"do_sample": False, "max_new_tokens": 400, "prompt_lookup_num_tokens": 6}
    )
    chunks = []
    for chunk in tiny_engine.stream(request, cancel):
        chunks.append(chunk)
        if chunk.tokens >= 5:
            cancel.set()
    assert chunks[-1].finish_reason == "interrupted" and chunks[-1].tokens < 400
    # the engine is usable after the interruption, and the next answer is still exact
    assert (
        ask(tiny_engine, REWRITE, do_sample=False, max_new_tokens=48, prompt_lookup_num_tokens=6)[0] == plain
    )
