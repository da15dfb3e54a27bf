"""The transformers side of JSON-schema answers: a LogitsProcessor that masks every token the schema's
grammar does not allow at this point (llguidance computes the mask; see qwenchat/structured.py)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from transformers import LogitsProcessor

from qwenchat.structured import SchemaError, grammar, ll_tokenizer


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
        bits = np.frombuffer(self.matcher.compute_bitmask(), dtype=np.uint8)
        allowed = torch.from_numpy(np.unpackbits(bits, bitorder="little")).to(scores.device).bool()
        vocab = scores.shape[-1]
        if allowed.shape[0] < vocab:  # logits past the tokenizer's words: never allowed
            pad = torch.zeros(vocab - allowed.shape[0], dtype=torch.bool, device=scores.device)
            allowed = torch.cat([allowed, pad])
        return scores.masked_fill(~allowed[:vocab], float("-inf"))


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
