"""The transformers side of JSON-schema answers: a LogitsProcessor that masks every token the schema's
grammar does not allow at this point (llguidance computes the mask; see qwenchat/structured/schema.py)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from transformers import LogitsProcessor

from qwenchat.structured.schema import SchemaError, grammar, ll_tokenizer


class SchemaLogitsProcessor(LogitsProcessor):
    """Masks the logits to the tokens the grammar allows. The first call sees the prompt; every later call
    sees one more sampled token, which the matcher consumes before the next mask."""

    def __init__(self, matcher: Any) -> None:
        self.matcher = matcher
        self._seen: int | None = None  # length of input_ids at the last call

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        n = input_ids.shape[1]
        if self._seen is not None and n > self._seen:
            self.matcher.consume_tokens(input_ids[0, self._seen :].tolist())
        self._seen = n
        if self.matcher.is_error():
            return scores  # a grammar failure shows in the validation line after the turn
        banned = np.unpackbits(
            ~np.frombuffer(self.matcher.compute_bitmask(), dtype=np.uint8), bitorder="little"
        )
        vocab = scores.shape[-1]
        if banned.shape[0] < vocab:  # logits past the tokenizer's words: never allowed
            banned = np.concatenate([banned, np.ones(vocab - banned.shape[0], dtype=np.uint8)])
        banned = banned[:vocab].view(bool)
        if scores.device.type == "cpu" and scores.dtype == torch.float32 and scores.is_contiguous():
            # In place through numpy: one pass, no extra threads (torch's masked_fill on a 150k-word
            # vocabulary costs ten times more on a busy CPU).
            np.putmask(scores.numpy(), np.broadcast_to(banned, scores.shape), -np.inf)
            return scores
        mask = torch.from_numpy(banned).to(scores.device)
        return scores.masked_fill(mask, float("-inf"))


def schema_processor(
    schema: dict[str, Any], tokenizer: Any, vocab_size: int, eos_ids: set[int], prefix_ids: list[int]
) -> SchemaLogitsProcessor:
    """A fresh processor for one turn. `prefix_ids`: what the answer already holds (a prefill, an answer
    being continued), which the matcher consumes first. SchemaError when either does not fit."""
    import llguidance

    tok = ll_tokenizer(tokenizer, vocab_size, eos_ids)
    matcher = llguidance.LLMatcher(tok, grammar(schema), log_level=0)
    if matcher.is_error():
        raise SchemaError(f"the schema cannot be used to constrain answers: {matcher.get_error()[:200]}")
    if prefix_ids and not matcher.consume_tokens(prefix_ids):
        raise SchemaError("the answer's start (a prefill, the answer continued) is not JSON for the schema")
    return SchemaLogitsProcessor(matcher)
