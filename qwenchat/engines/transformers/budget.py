"""The reasoning budget in the transformers engine: a logits processor that, once the budget of thinking
tokens is spent with the think block still open, forces the closing text's tokens one step at a time; the
model then samples the answer as usual. Inside one generate call, so Ctrl-C, streaming and the kept cache
work as in any turn (reasoning.py has the why)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from transformers import LogitsProcessor, LogitsProcessorList

from qwenchat.reasoning import CLOSE_TEXT, BudgetTracker


class ThinkBudget(LogitsProcessor):
    def __init__(self, tracker: BudgetTracker, decode: Any, close_ids: list[int], prompt_len: int) -> None:
        self.tracker = tracker
        self.decode = decode
        self.close_ids = close_ids
        self.seen = prompt_len  # positions of input_ids already given to the tracker
        self.queue: list[int] = []

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        n = input_ids.shape[1]
        for tok in input_ids[0, self.seen : n].tolist():
            if self.tracker.step(self.decode(tok)):
                self.queue = list(self.close_ids)
        self.seen = n
        if not self.queue:
            return scores
        forced = self.queue.pop(0)
        out = torch.full_like(scores, float("-inf"))
        out[:, forced] = 0.0
        return out


def budget_processors(
    budget: int | None,
    think_open: bool,
    prompt_len: int,
    *,
    tokenize: Callable[[str], list[int]],
    new_decoder: Callable[[], Callable[[int], str]],
) -> LogitsProcessorList:
    """No processor without a budget: the turn is then exactly what it was before budgets existed."""
    if budget is None:
        return LogitsProcessorList()
    close_ids = tokenize(CLOSE_TEXT)
    return LogitsProcessorList(
        [ThinkBudget(BudgetTracker(budget, think_open), new_decoder(), close_ids, prompt_len)]
    )
