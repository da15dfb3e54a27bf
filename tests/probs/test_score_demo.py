"""`:score` of the model's own greedy answer equals the sum of its `:probs` log-probabilities, on the demo
model in both in-process engines, and scoring leaves the next turn as it would have been.

The answer is scored teacher-forced after the cached prompt, its tokens computed one at a time in the shapes
the turn decoded them in, so the numbers agree to float rounding (in practice they are the same bits)."""

from __future__ import annotations

import math

import pytest

from qwenchat.chat.session import ChatSession
from qwenchat.engines.transformers.engine import TransformersEngine

GREEDY = {"do_sample": False, "max_new_tokens": 24, "repetition_penalty": 1.0}
QUESTION = "Name the seven colours of the rainbow, in one sentence."


def own_answer_scored(engine) -> tuple[ChatSession, list, object]:
    chat = ChatSession(engine)
    chat.settings.update(GREEDY)
    chat.probs_k = 5
    chat.send(QUESTION)
    msg = chat.conversation.messages[-1]
    assert msg.probs and len(msg.probs) >= 8
    return chat, msg.probs, chat.score(msg.content)


def test_transformers_score_of_own_greedy_answer_equals_its_probs(demo_f32):
    engine = TransformersEngine(demo_f32.model, demo_f32.tokenizer, demo_f32.name)
    chat, probs, score = own_answer_scored(engine)
    assert [t.id for t in score.tokens] == [p.id for p in probs]  # same tokens, same count
    assert score.total == pytest.approx(math.fsum(p.logprob for p in probs), abs=1e-3)
    assert max(abs(t.logprob - p.logprob) for t, p in zip(score.tokens, probs, strict=True)) < 1e-4
    assert [a.id for a in score.tokens[0].top] == [a.id for a in probs[0].top]
    # served from the kept cache: a retry finds the prompt cached and answers the same
    first = chat.conversation.messages[-1].content
    assert chat.retry().text == first
    assert chat.last_stats.reused_tokens == chat.last_stats.prompt_tokens - 1


def test_llamacpp_score_of_own_greedy_answer_equals_its_probs(llamacpp_engine):
    engine = llamacpp_engine
    engine.reset()
    chat, probs, score = own_answer_scored(engine)
    assert [t.id for t in score.tokens] == [p.id for p in probs]
    assert score.total == pytest.approx(math.fsum(p.logprob for p in probs), abs=1e-3)
    assert max(abs(t.logprob - p.logprob) for t, p in zip(score.tokens, probs, strict=True)) < 1e-4
    assert chat.score(chat.conversation.messages[-1].content).total == score.total  # reproducible
    # the next turn is the one an unscored chat gets
    first = chat.conversation.messages[-1].content
    assert chat.retry().text == first
    assert chat.last_stats.reused_tokens == chat.last_stats.prompt_tokens - 1
    chat.score("Red, green and blue.")
    scored_next = chat.send("And two more?").text
    engine.reset()
    plain = ChatSession(engine)
    plain.settings.update(GREEDY)
    plain.send(QUESTION)
    assert plain.send("And two more?").text == scored_next
