"""Speculative decoding that keeps answers exact: drafts from the conversation itself (prompt lookup) or from
a small draft model, checked by the model in one batch; only the tokens the model itself would have chosen
are kept, so a greedy answer is the same with or without drafting (up to the arithmetic of batch shapes).

The n-gram lookup, the per-turn counters and the draft length live here, free of torch, and are shared by the
transformers engine (a wrapper around generate's candidate generator) and the llama.cpp engine (its own
draft-and-verify loop, engines/llamacpp_lookup.py).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from qwenchat.engines.api import EngineError

MAX_NGRAM = 3  # the longest suffix of the text so far that is looked up in the conversation
# Draft length: a turn starts with short drafts, grows them by GROW while every drafted token is accepted
# (up to the user's N) and shrinks them to what was accepted plus one after a miss. A suffix found only as
# one token is too weak a guess to pay for its check on a CPU, where a batch of 2 costs ~1.4 steps: no draft.
# This keeps turns of new prose at plain speed and lets copied code run at long drafts (simulated on
# bench/speculative.py's recorded answers against measured batch costs, then measured: README).
START_LENGTH = 2
GROW = 2
MIN_NGRAM = 2


def find_draft(tokens: Sequence[int], n: int, max_ngram: int = MAX_NGRAM, min_ngram: int = 1) -> list[int]:
    """Up to `n` tokens that followed the latest earlier occurrence of the longest suffix of `tokens`
    (max_ngram tokens down to min_ngram) found in `tokens`; [] when none is found."""
    size = len(tokens)
    for ngram in range(min(max_ngram, size - 1), min_ngram - 1, -1):
        tail = list(tokens[size - ngram :])
        first = tail[0]
        # the latest occurrence that has at least one token after it and is not the suffix itself
        for start in range(size - ngram - 1, -1, -1):
            if tokens[start] == first and list(tokens[start : start + ngram]) == tail:
                follow = list(tokens[start + ngram : start + ngram + n])
                if follow:
                    return follow
    return []


@dataclass
class DraftStats:
    """One turn's drafting: counts for :stats, and how long the next draft may be."""

    limit: int = 0  # the longest draft (the user's N); 0: a draft model drafts, this only counts
    length: int = START_LENGTH
    drafted: int = 0
    accepted: int = 0

    def __post_init__(self) -> None:
        self.length = min(self.length, self.limit) if self.limit else self.length

    def draft(self, tokens: Sequence[int], room: int) -> list[int]:
        """The next prompt-lookup draft for `tokens`, at most `room` tokens."""
        n = min(self.length, room)
        if n <= 0:
            return []
        return find_draft(tokens, n, min_ngram=MIN_NGRAM)

    def record(self, drafted: int, accepted: int) -> None:
        self.drafted += drafted
        self.accepted += accepted
        if not drafted or not self.limit:
            return
        if accepted == drafted:
            self.length = min(self.limit, self.length + GROW)
        else:
            self.length = max(1, accepted + 1)


class _LookupCandidates:
    """Stands in for generate's candidate generator: drafts by n-gram lookup (prompt lookup) or through
    the wrapped generator (a draft model), and counts what was drafted and accepted."""

    def __init__(self, inner: Any, stats: DraftStats, max_length: int) -> None:
        self.inner = inner
        self.stats = stats  # stats.limit 0: the inner generator (a draft model) drafts
        self.max_length = max_length
        self._last = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def get_candidates(self, input_ids: Any, **kwargs: Any) -> tuple[Any, Any]:
        self._last = 0
        if not self.stats.limit:
            cand, logits = self.inner.get_candidates(input_ids, **kwargs)
        else:
            import torch

            draft = self.stats.draft(input_ids[0].tolist(), self.max_length - input_ids.shape[1] - 1)
            if not draft:
                return input_ids, None
            extra = torch.tensor([draft], dtype=input_ids.dtype, device=input_ids.device)
            cand, logits = torch.cat([input_ids, extra], dim=1), None
        self._last = cand.shape[1] - input_ids.shape[1]
        return cand, logits

    def update_candidate_strategy(self, input_ids: Any, scores: Any, num_matches: Any) -> None:
        self.stats.record(self._last, int(num_matches))
        self._last = 0
        if not self.stats.limit:
            self.inner.update_candidate_strategy(input_ids, scores, num_matches)


@contextlib.contextmanager
def counting(model: Any, stats: DraftStats | None) -> Iterator[None]:
    """For one generate call: candidates come from our lookup (or the draft model) and are counted in
    `stats`. The hook is an instance attribute, removed afterwards: the model stays as loaded."""
    if stats is None:
        yield
        return
    original = model._get_candidate_generator

    def make(*args: Any, **kwargs: Any) -> Any:
        inner = original(*args, **kwargs)
        config = kwargs.get("generation_config") or args[0]
        return _LookupCandidates(inner, stats, int(config.max_length))

    prepare = model.prepare_inputs_for_generation

    def prepare_first(input_ids: Any, *args: Any, **kwargs: Any) -> Any:
        # Assisted generation feeds the whole prompt on its first step, whatever the cache holds; the
        # cache holds all but the last prompt token (our prefill), so only that token and the draft go in.
        cache = kwargs.get("cache", kwargs.get("past_key_values"))
        if (
            kwargs.get("is_first_iteration")
            and kwargs.get("next_sequence_length") is None
            and cache is not None
        ):
            held = cache.get_seq_length()
            if 0 < held < input_ids.shape[1]:
                kwargs["next_sequence_length"] = input_ids.shape[1] - held
        return prepare(input_ids, *args, **kwargs)

    model._get_candidate_generator = make
    model.prepare_inputs_for_generation = prepare_first
    try:
        yield
    finally:
        for name in ("_get_candidate_generator", "prepare_inputs_for_generation"):
            with contextlib.suppress(AttributeError):
                delattr(model, name)


def check_same_vocab(target: Any, draft: Any, draft_name: str) -> None:
    """Refuse a draft model whose tokenizer differs from the model's: its tokens would mean other text."""
    if target.get_vocab() != draft.get_vocab():
        raise EngineError(
            f"--draft-model {draft_name}: its tokenizer differs from the model's "
            f"({len(draft.get_vocab())} vs {len(target.get_vocab())} tokens); pick one of the same family"
        )


def lookup_tokens(settings: dict[str, Any]) -> int | None:
    """The prompt_lookup_num_tokens setting: a positive number turns prompt lookup on."""
    value = settings.get("prompt_lookup_num_tokens")
    return int(value) if value else None
