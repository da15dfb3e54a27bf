"""Speculative decoding that keeps answers exact: drafts from the conversation itself (prompt lookup) or from
a small draft model, checked by the model in one batch; only the tokens the model itself would have chosen
are kept, so a greedy answer is the same with or without drafting (up to the arithmetic of batch shapes).

The n-gram lookup, the per-turn counters and the auto-off live here, free of torch, and are shared by the
transformers engine (a wrapper around generate's candidate generator) and the llama.cpp engine (its own
draft-and-verify loop, engines/llamacpp_lookup.py).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from qwenchat.engines.api import EngineError

MAX_NGRAM = 3  # the longest suffix of the text so far that is looked up in the conversation
# Auto-off: when a window of drafting steps accepted under LOW_RATE of what it drafted, drafting pauses for
# PAUSE_STEPS decode steps, then tries again (an answer may turn from new prose to copied code).
WINDOW_DRAFTED = 24
LOW_RATE = 0.2
PAUSE_STEPS = 24


def find_draft(tokens: Sequence[int], n: int, max_ngram: int = MAX_NGRAM) -> list[int]:
    """Up to `n` tokens that followed the latest earlier occurrence of the longest suffix of `tokens`
    (max_ngram tokens down to one) found in `tokens`; [] when none is found."""
    size = len(tokens)
    for ngram in range(min(max_ngram, size - 1), 0, -1):
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
    """Drafted and accepted tokens of one turn, and the auto-off's state."""

    auto_off: bool = True
    drafted: int = 0
    accepted: int = 0
    paused_steps: int = 0  # decode steps left without drafting
    pauses: int = 0
    _window: list[tuple[int, int]] = field(default_factory=list)

    def allow(self) -> bool:
        """Whether this decode step may draft; counts a paused step down."""
        if self.paused_steps > 0:
            self.paused_steps -= 1
            return False
        return True

    def record(self, drafted: int, accepted: int) -> None:
        self.drafted += drafted
        self.accepted += accepted
        if not self.auto_off or drafted == 0:
            return
        self._window.append((drafted, accepted))
        total = sum(d for d, _ in self._window)
        if total >= WINDOW_DRAFTED:
            if sum(a for _, a in self._window) < LOW_RATE * total:
                self.paused_steps = PAUSE_STEPS
                self.pauses += 1
            self._window.clear()


class _LookupCandidates:
    """Stands in for generate's candidate generator: drafts by n-gram lookup (prompt lookup) or through
    the wrapped generator (a draft model), and counts what was drafted and accepted."""

    def __init__(self, inner: Any, stats: DraftStats, lookup: int | None, max_length: int) -> None:
        self.inner = inner
        self.stats = stats
        self.lookup = lookup  # tokens per draft for prompt lookup; None: the inner generator drafts
        self.max_length = max_length
        self._last = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def get_candidates(self, input_ids: Any, **kwargs: Any) -> tuple[Any, Any]:
        self._last = 0
        if self.lookup is None:
            cand, logits = self.inner.get_candidates(input_ids, **kwargs)
        else:
            import torch

            budget = min(self.lookup, self.max_length - input_ids.shape[1] - 1)
            if budget <= 0 or not self.stats.allow():
                return input_ids, None
            draft = find_draft(input_ids[0].tolist(), budget)
            if not draft:
                return input_ids, None
            extra = torch.tensor([draft], dtype=input_ids.dtype, device=input_ids.device)
            cand, logits = torch.cat([input_ids, extra], dim=1), None
        self._last = cand.shape[1] - input_ids.shape[1]
        return cand, logits

    def update_candidate_strategy(self, input_ids: Any, scores: Any, num_matches: Any) -> None:
        self.stats.record(self._last, int(num_matches))
        self._last = 0
        if self.lookup is None:
            self.inner.update_candidate_strategy(input_ids, scores, num_matches)


@contextlib.contextmanager
def counting(model: Any, stats: DraftStats | None, lookup: int | None) -> Iterator[None]:
    """For one generate call: candidates come from our lookup (or the draft model) and are counted in
    `stats`. The hook is an instance attribute, removed afterwards: the model stays as loaded."""
    if stats is None:
        yield
        return
    original = model._get_candidate_generator

    def make(*args: Any, **kwargs: Any) -> Any:
        inner = original(*args, **kwargs)
        config = kwargs.get("generation_config") or args[0]
        return _LookupCandidates(inner, stats, lookup, int(config.max_length))

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
