"""Prompt lookup for the llama.cpp engine: draft tokens from the conversation, check them in one batch.

llama-cpp-python's own LlamaPromptLookupDecoding needs `logits_all=True` at load time (an n_ctx x n_vocab
float array: 2.5 GB for the demo at 4096 tokens) and its generate evaluates the prompt its own way, so this
loop drives the context itself: one batch of [last token, draft...] with logits for every position, then
the sampler at each position in turn, keeping the draft while the sampled token equals it. Every sample is
a token of the answer, exactly as in one-token-at-a-time decoding, so the sampler's state (penalties, its
random numbers) advances the same way: with the same logits the answer is the same, greedy or sampled.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

from qwenchat.engines.job import Outcome
from qwenchat.engines.speculative import DraftStats


def lookup_sample(
    llm: Any,
    ids: Sequence[int],
    sampling: dict[str, Any],
    max_new: int,
    lookup: int,
    is_end: Callable[[int], bool],
    emit: Callable[[int], None],
    outcome: Outcome,
    cancel: threading.Event,
) -> None:
    """Decode after a prefill that left all but the last prompt token in the cache (llm.n_tokens)."""
    sampler = llm._init_sampler(**sampling)
    stats = DraftStats(limit=lookup)
    history = list(ids)
    n_past = len(ids) - 1
    pending = ids[-1]
    n_ctx = llm.n_ctx()
    generated = 0
    try:
        while True:
            draft = stats.draft(history, min(n_ctx - n_past - 1, max_new - generated - 1))
            batch = [pending, *draft]
            llm._ctx.kv_cache_seq_rm(-1, n_past, -1)
            llm._batch.set_batch(batch=batch, n_past=n_past, logits_all=bool(draft))
            llm._ctx.decode(llm._batch)
            llm.input_ids[n_past : n_past + len(batch)] = batch
            llm.n_tokens = n_past + len(batch)
            llm._requires_eval = False
            matched, done = 0, False
            for i in range(len(batch)):
                token = sampler.sample(llm._ctx, i - len(batch))
                history.append(token)
                if is_end(token):
                    outcome.finish, done = "stop", True
                    break
                generated += 1
                emit(token)
                if cancel.is_set() or generated >= max_new or outcome.stop_hit:
                    done = True
                    break
                if i < len(draft) and token == draft[i]:
                    matched += 1
                    continue
                break
            stats.record(len(draft), matched)
            if done:
                return
            # The cache keeps pending and the accepted draft; the last sampled token goes in next batch.
            n_past += 1 + matched
            llm.n_tokens = n_past
            pending = history[-1]
    finally:
        llm.n_tokens = min(llm.n_tokens, n_past)
        llm._ctx.kv_cache_seq_rm(-1, llm.n_tokens, -1)
        outcome.drafted_tokens, outcome.accepted_tokens = stats.drafted, stats.accepted
