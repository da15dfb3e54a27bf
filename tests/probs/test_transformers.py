"""Token probabilities on the real demo model (transformers engine): what is recorded, and :branch."""

from __future__ import annotations

import math

import pytest
import torch

from qwenchat.chat.session import ChatSession
from qwenchat.conversation.file import conversation_from_dict, conversation_to_dict
from qwenchat.conversation.model import Conversation
from qwenchat.engines.transformers.engine import TransformersEngine
from qwenchat.probs.branch import plan_branch

GREEDY = {"do_sample": False, "max_new_tokens": 24, "repetition_penalty": 1.0}  # the demo has 1.1


@pytest.fixture(scope="module")
def engine(demo_loaded):
    return TransformersEngine(demo_loaded.model, demo_loaded.tokenizer, demo_loaded.name)


@pytest.fixture(scope="module")
def answered(engine):
    """One greedy answer with probabilities on (k = 5), shared by the tests of this module."""
    chat = ChatSession(engine)
    chat.settings.update(GREEDY)
    chat.probs_k = 5
    result = chat.send("Name three colours of the rainbow.")
    assert result.finish_reason in ("stop", "length")
    return chat


def test_greedy_tokens_are_rank_one_and_top_k_is_a_sorted_sub_distribution(answered):
    probs = answered.conversation.messages[-1].probs
    assert probs and len(probs) >= 10
    for p in probs:
        assert p.rank() == 1
        assert p.id == p.top[0].id or p.top[0].logprob == p.logprob  # first, or tied with the first
        assert len(p.top) == 5
        lps = [a.logprob for a in p.top]
        assert lps == sorted(lps, reverse=True)
        assert sum(math.exp(lp) for lp in lps) <= 1.0 + 1e-6
        assert p.sampled_top is None and p.source == "raw"  # greedy: nothing was sampled
    # The records are the answer's tokens: decoded together they give the answer's text.
    text = answered.engine.detokenize([p.id for p in probs])
    assert answered.conversation.messages[-1].content == text


def _worst_gap(probs, logp_rows) -> float:
    """The largest difference between a recorded probability and the same token's in `logp_rows`."""
    worst = 0.0
    for p, row in zip(probs, logp_rows, strict=True):
        for tok_id, lp in [(p.id, p.logprob), *((a.id, a.logprob) for a in p.top)]:
            worst = max(worst, abs(math.exp(lp) - math.exp(float(row[tok_id]))))
    return worst


def test_recorded_probabilities_match_an_independent_forward_pass(answered, demo_loaded):
    from transformers import DynamicCache

    from qwenchat.engines.transformers.engine import PREFILL_CHUNK

    model = demo_loaded.model
    msgs = answered.conversation.messages
    probs = msgs[-1].probs
    chat = ChatSession(answered.engine, conversation=Conversation(messages=msgs[:-1]))
    prompt = answered.engine.encode(chat.request())
    ids = prompt + [p.id for p in probs]
    with torch.inference_mode():
        # 1. one plain forward pass over all the ids at once
        logp = torch.log_softmax(model(input_ids=torch.tensor([ids])).logits[0].float(), dim=-1)
        one_shot = _worst_gap(probs, logp[len(prompt) - 1 : len(ids) - 1])
        # 2. plain forward passes in the shapes the engine uses (prompt chunks, then one token at a time)
        cache, rows, pos = DynamicCache(config=model.config), [], 0
        while pos < len(ids) - 1:
            stop = (
                min((pos // PREFILL_CHUNK + 1) * PREFILL_CHUNK, len(prompt) - 1)
                if pos < len(prompt) - 1
                else pos + 1
            )
            out = model(input_ids=torch.tensor([ids[pos:stop]]), past_key_values=cache, use_cache=True)
            if stop >= len(prompt):
                rows.append(torch.log_softmax(out.logits[0, -1].float(), dim=-1))
            pos = stop
        same_shapes = _worst_gap(probs, rows)
    # bf16 rounds differently for a different batch shape: the one-shot pass agrees to ~3 points of
    # probability, the same shapes to float32 rounding of the softmax.
    assert one_shot < 0.05, one_shot
    assert same_shapes < 1e-4, same_shapes


def test_branch_keeps_the_prefix_forces_the_alternative_and_undo_restores(answered):
    chat = answered
    old = chat.conversation.messages[-1]
    n = 4
    alt = old.probs[n - 1].top[1]
    chat.branch(plan_branch(chat.engine, old.probs, str(n), "2"))
    new = chat.conversation.messages[-1]
    assert [p.id for p in new.probs[: n - 1]] == [p.id for p in old.probs[: n - 1]]
    assert new.probs[n - 1].id == alt.id and new.probs[n - 1].forced
    assert len(new.probs) > n  # the model went on after the forced token
    assert new.content.startswith(chat.engine.detokenize([p.id for p in old.probs[: n - 1]] + [alt.id]))
    assert new.replaces is old
    # the new answer's tokens, as ids, are the kept ones, the forced one and the generated ones
    assert chat.engine.detokenize([p.id for p in new.probs]) == new.content
    # the session file keeps both answers
    data = conversation_to_dict(chat.conversation)
    again = conversation_from_dict(data)
    assert again.messages[-1].replaces.content == old.content
    assert [p.id for p in again.messages[-1].probs] == [p.id for p in new.probs]
    chat.undo()
    assert chat.conversation.messages[-1] is old


def test_branch_with_text_and_sampled_distribution(engine):
    chat = ChatSession(engine)
    chat.settings.update({"max_new_tokens": 12, "do_sample": True, "temperature": 0.7})
    chat.probs_k = 3
    chat.send("Say hello.")
    old = chat.conversation.messages[-1]
    assert all(p.sampled_logprob is not None and p.sampled_top for p in old.probs)
    # temperature 0.7 sharpens the distribution: the most likely token gains
    assert any(p.sampled_top[0].logprob > p.top[0].logprob for p in old.probs)
    chat.branch(plan_branch(chat.engine, old.probs, "2", '" Bonjour"'))
    new = chat.conversation.messages[-1]
    first = chat.engine.detokenize([old.probs[0].id])
    assert new.content.startswith(first + " Bonjour")
    assert new.probs[1].forced and new.probs[1].logprob is None


def test_greedy_with_repetition_penalty_records_the_distribution_chosen_from(engine):
    chat = ChatSession(engine)
    chat.settings.update({"max_new_tokens": 16, "do_sample": False, "repetition_penalty": 1.5})
    chat.probs_k = 5
    chat.send("Repeat the word 'blue' five times.")
    probs = chat.conversation.messages[-1].probs
    # the penalty changes the scores, so the distribution chosen from is recorded beside the raw one,
    # and the greedy choice is first there
    assert all(p.sampled_top is not None for p in probs)
    for p in probs:
        assert p.sampled_logprob == max(a.logprob for a in p.sampled_top)
