"""Token probabilities with the llama.cpp engine on the real demo GGUF (needs the `llamacpp` extra)."""

from __future__ import annotations

import math

import numpy as np

from qwenchat.chat.session import ChatSession
from qwenchat.conversation.model import Conversation
from qwenchat.probs.branch import plan_branch

GREEDY = {"do_sample": False, "max_new_tokens": 20, "repetition_penalty": 1.0}


def test_llamacpp_probs_greedy_rank_one_match_plain_eval_and_branch(llamacpp_engine):
    import llama_cpp

    engine = llamacpp_engine  # the demo GGUF, one per module (conftest)

    chat = ChatSession(engine)
    chat.settings.update(GREEDY)
    chat.probs_k = 5
    chat.send("Name three colours of the rainbow.")
    msg = chat.conversation.messages[-1]
    probs = msg.probs
    assert probs and len(probs) >= 10
    assert engine.detokenize([p.id for p in probs]) == msg.content
    for p in probs:
        assert p.rank() == 1 and p.source == "raw" and p.sampled_top is None
        lps = [a.logprob for a in p.top]
        assert lps == sorted(lps, reverse=True) and sum(math.exp(x) for x in lps) <= 1.0 + 1e-6

    # An independent pass: llama.cpp's plain eval over the same ids in the batches the engine used, each
    # position's logits soft-maxed here. A position's logits depend on the batch it is computed in (by up to
    # ~1e-2 in probability with AVX2 kernels), so the schedule is the engine's: the prompt but its last
    # token in batches aligned to multiples of prefill_chunk, the last token alone, then the answer a token
    # at a time. Same batches, same kernels: what is left is float32 against float64 soft-max (~1e-7).
    prompt = engine.encode(
        ChatSession(engine, conversation=Conversation(messages=[msg_user(chat)])).request()
    )
    ids = prompt + [p.id for p in probs]
    llm, size = engine.llm, engine.prefill_chunk
    engine.reset()
    for start in range(0, len(prompt) - 1, size):
        llm.eval(prompt[start : min(start + size, len(prompt) - 1)])
    llm.eval(prompt[-1:])
    worst = 0.0
    for i, p in enumerate(probs):
        logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(llm.ctx, -1), shape=(llm.n_vocab(),))
        logp = logits.astype(np.float64) - np.logaddexp.reduce(logits.astype(np.float64))
        for tok, lp in [(p.id, p.logprob), *((a.id, a.logprob) for a in p.top)]:
            worst = max(worst, abs(math.exp(lp) - math.exp(logp[tok])))
        llm.eval([ids[len(prompt) + i]])
    engine.reset()
    assert worst < 1e-4, worst

    # :branch on token ids: prefix kept, the 2nd alternative forced at N; :undo brings the answer back
    n, alt = 3, probs[2].top[1]
    chat.branch(plan_branch(engine, probs, str(n), "2"))
    new = chat.conversation.messages[-1]
    assert [p.id for p in new.probs[:n]] == [p.id for p in probs[: n - 1]] + [alt.id]
    assert engine.detokenize([p.id for p in new.probs]) == new.content
    chat.undo()
    assert chat.conversation.messages[-1] is msg


def msg_user(chat):
    return chat.conversation.messages[-2]
