"""Teacher-forced scoring of a given answer (`:score`, a batch prompt's `reference`), transformers engine.

The prompt goes through the engine's own keep/prefill path (prefix_cache.py): it comes from the kept cache
and is computed on the same schedule as a turn's, so a score is reproducible and the cache stays trusted.
Then the prompt's last token and the answer's tokens but its last are computed one at a time, in the shapes
a turn decodes them in (a batch rounds differently: in bfloat16 by a few hundredths of a token's
log-probability), and each answer token's log-probability is read from the logits before it with the same
formula `:probs` records with (probs.py): the model's own answer scores what `:probs` recorded for it.
Afterwards the cache is cropped back to the prompt but its last token: the state a retry of that prompt
finds.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Protocol

import torch

from qwenchat.engines.api import GenerationRequest, ScoreError
from qwenchat.engines.job import Job, Outcome
from qwenchat.engines.prefix_cache import Plan
from qwenchat.probs.record import Alt, TokenProb, WholeChars


class Scorable(Protocol):
    """What a score needs of the transformers engine (which imports this module)."""

    model: Any
    tokenizer: Any
    static: Any
    prefill_chunk: int
    _cache: Any
    _cached_ids: list[int]

    @property
    def context_window(self) -> int | None: ...

    @property
    def device(self) -> Any: ...

    def encode(self, request: GenerationRequest) -> list[int]: ...

    def _tokenize(self, prompt: str) -> list[int]: ...

    def plan(self, request: GenerationRequest, ids: list[int]) -> Plan: ...

    def _prepare_cache(self, plan: Plan) -> int: ...

    def _prefill(
        self, plan: Plan, start: int, emit: Callable[[Any], None], cancel: threading.Event
    ) -> bool: ...

    def _forget(self) -> None: ...


def score_job(engine: Scorable, request: GenerationRequest, answer: str, out: list[TokenProb]) -> Job:
    """The engine's job for one score; the records go into `out`. ScoreError before anything runs when the
    answer is empty or prompt and answer do not fit the context window."""
    ids = engine.encode(request)
    plan = engine.plan(request, ids)  # the prompt on a turn's schedule: from the kept cache, kept after
    answer_ids = engine._tokenize(answer)
    if not answer_ids:
        raise ScoreError("the answer to score is empty")
    window = engine.context_window
    if window and len(ids) + len(answer_ids) > window:
        raise ScoreError(
            f"prompt and answer ({len(ids)} + {len(answer_ids)} tokens) do not fit the {window}-token context"
        )
    k = max(request.probs_k, 1)
    tokenizer = engine.tokenizer
    chars = WholeChars(lambda t: tokenizer.decode(t, skip_special_tokens=False))

    def run(emit: Callable[[Any], None], outcome: Outcome, cancel: threading.Event) -> None:
        if engine.static is not None:  # --compile: room for the answer in the static cache
            engine.static.want(len(ids) + len(answer_ids))
        outcome.reused_tokens = engine._prepare_cache(plan)
        with torch.inference_mode():
            if not engine._prefill(plan, outcome.reused_tokens, emit, cancel):
                return
            inputs = ids[-1:] + answer_ids[:-1]  # input i predicts answer token i
            for pos, (token_in, token) in enumerate(zip(inputs, answer_ids, strict=True), start=len(ids) - 1):
                if cancel.is_set():
                    return
                logits = engine.model(
                    input_ids=torch.tensor([[token_in]], dtype=torch.long, device=engine.device),
                    past_key_values=engine._cache,
                    use_cache=True,
                    cache_position=torch.tensor([pos], device=engine.device),
                ).logits[0]
                out.extend(_records(logits, [token], k, tokenizer, chars))

    def commit(items: list[Any]) -> None:
        # Back to what the prefill left (the prompt but its last token, or less after a Ctrl-C).
        cache = engine._cache
        held = cache.get_seq_length() if cache is not None else 0
        keep = len(engine._cached_ids)
        if held > keep:
            cache.crop(keep - held)  # type: ignore[union-attr]  # negative: tokens to drop
        elif held < keep:
            engine._forget()

    return Job(run, prompt_tokens=len(ids), invalidate=engine._forget, commit=commit)


def _records(
    logits: torch.Tensor, targets: list[int], k: int, tokenizer: Any, chars: WholeChars
) -> list[TokenProb]:
    """One TokenProb per row: the target's log-probability and the top k, as probs._top computes them."""
    scores = logits.float()
    lse = torch.logsumexp(scores, dim=-1)
    values, top_ids = scores.topk(k, dim=-1)
    tgt = scores.gather(1, torch.tensor(targets, device=scores.device).unsqueeze(1)).squeeze(1)
    top_lps = (values - lse.unsqueeze(1)).tolist()
    tgt_lps = (tgt - lse).tolist()
    top_ids_l = top_ids.tolist()
    out = []
    for tok, lp, ids_row, lps_row in zip(targets, tgt_lps, top_ids_l, top_lps, strict=True):
        texts = tokenizer.batch_decode([[i] for i in ids_row], skip_special_tokens=False)
        alts = [Alt(t, i, v) for t, i, v in zip(texts, ids_row, lps_row, strict=True)]
        out.append(TokenProb(id=tok, text=chars.text(tok), logprob=lp, top=alts))
    return out
