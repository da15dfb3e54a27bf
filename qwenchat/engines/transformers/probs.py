"""Token probabilities for the transformers engine (`:probs on`).

The raw distribution comes from a forward hook on the model's output projection (the logits before any
logits processor). The sampled one: generate runs a custom logits processor after its own processors
(repetition penalty, ...) but before its sampling warpers (temperature, top-k, top-p, min-p, typical-p,
epsilon, eta), so the capture applies the same warpers, built from the same GenerationConfig, to a copy.
The record of a step is finished when the streamer hands on its token. With
probabilities off none of this is attached, so decoding runs exactly as without the feature.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import torch
from transformers import LogitsProcessor, LogitsProcessorList
from transformers.generation import logits_process as lp

from qwenchat.engines.api import GenerationRequest
from qwenchat.probs.record import Alt, TokenProb, WholeChars


class ProbsCapture(LogitsProcessor):
    """Records one TokenProb per generated token into `records` (ends of sequence left out)."""

    def __init__(
        self, tokenizer: Any, k: int, *, warpers: LogitsProcessorList | None, skip_ids: set[int]
    ) -> None:
        self.tokenizer = tokenizer
        self.k = k
        self.warpers = warpers  # None: greedy, the choice is the first of the processed scores
        self.skip_ids = skip_ids
        self.records: list[TokenProb] = []
        self._chars = WholeChars(lambda ids: tokenizer.decode(ids, skip_special_tokens=False))
        self._raw: torch.Tensor | None = None
        self._processed: torch.Tensor | None = None

    # generate calls this last among its processors: the scores it samples from
    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        processed = scores if self.warpers is None else self.warpers(input_ids, scores.clone())
        self._processed = processed[0]
        return scores

    def _hook(self, module: Any, args: Any, output: torch.Tensor) -> None:
        self._raw = output[0, -1]

    @contextlib.contextmanager
    def attached(self, model: Any) -> Iterator[LogitsProcessorList]:
        """The hook on the output projection for the duration of one generate call."""
        handle = model.get_output_embeddings().register_forward_hook(self._hook)
        try:
            yield LogitsProcessorList([self])
        finally:
            handle.remove()

    def wrap(self, emit: Callable[[int], None]) -> Callable[[int], None]:
        """The streamer's emit, recording each token's probabilities before the token goes on."""

        def emit_with_probs(tok: int) -> None:
            if self._raw is not None and tok not in self.skip_ids:
                self.records.append(self.record(tok))
            emit(tok)

        return emit_with_probs

    def record(self, tok: int) -> TokenProb:
        # Three passes over the vocabulary (cast, logsumexp, top-k) rather than a whole log_softmax.
        raw = self._raw.float()  # type: ignore[union-attr]
        top_ids, lps = _top(raw, self.k, tok)
        sampled_lp: float | None = None
        sampled_top: list[Alt] | None = None
        proc = self._processed
        if proc is not None and (self.warpers is not None or not torch.equal(proc, raw)):
            s_ids, s_lps = _top(proc.float(), self.k, tok)
            sampled_lp = s_lps[-1]
            keep = [(i, lp) for i, lp in zip(s_ids, s_lps, strict=False) if lp > float("-inf")]
            sampled_top = self._alts([i for i, _ in keep], [lp for _, lp in keep])
        return TokenProb(
            id=tok,
            text=self._chars.text(tok),
            logprob=lps[-1],
            top=self._alts(top_ids, lps[:-1]),
            sampled_logprob=sampled_lp,
            sampled_top=sampled_top,
        )

    def _texts(self, ids: list[int]) -> list[str]:
        return self.tokenizer.batch_decode([[i] for i in ids], skip_special_tokens=False)

    def _alts(self, ids: list[int], lps: list[float]) -> list[Alt]:
        return [Alt(t, i, lp) for t, i, lp in zip(self._texts(ids), ids, lps, strict=True)]


def _top(scores: torch.Tensor, k: int, tok: int) -> tuple[list[int], list[float]]:
    """The top-k ids and their logprobs, and `tok`'s logprob last; one transfer to Python."""
    values, ids = scores.topk(k)
    lps = torch.cat([values, scores[tok : tok + 1]]) - torch.logsumexp(scores, dim=-1)
    return ids.tolist(), lps.tolist()


def for_request(
    request: GenerationRequest, tokenizer: Any, config: Any, skip_ids: set[int]
) -> ProbsCapture | None:
    """A capture when the request asks for probabilities, else None (nothing attached to generate)."""
    if not request.probs_k:
        return None
    warpers = sampling_warpers(config) if config.do_sample else None
    return ProbsCapture(tokenizer, request.probs_k, warpers=warpers, skip_ids=skip_ids)


def sampling_warpers(c: Any) -> LogitsProcessorList:
    """The warpers generate applies when sampling, in its order (GenerationMixin._get_logits_processor)."""
    out = LogitsProcessorList()
    if c.temperature is not None and c.temperature != 1.0:
        out.append(lp.TemperatureLogitsWarper(c.temperature))
    if getattr(c, "top_h", None) is not None:
        out.append(lp.TopHLogitsWarper(top_h=c.top_h))
    if c.top_k is not None and c.top_k != 0:
        out.append(lp.TopKLogitsWarper(top_k=c.top_k))
    if c.top_p is not None and c.top_p < 1.0:
        out.append(lp.TopPLogitsWarper(top_p=c.top_p))
    if c.min_p is not None:
        out.append(lp.MinPLogitsWarper(min_p=c.min_p))
    if c.typical_p is not None and c.typical_p < 1.0:
        out.append(lp.TypicalLogitsWarper(mass=c.typical_p))
    if c.epsilon_cutoff is not None and 0.0 < c.epsilon_cutoff < 1.0:
        out.append(lp.EpsilonLogitsWarper(epsilon=c.epsilon_cutoff))
    if c.eta_cutoff is not None and 0.0 < c.eta_cutoff < 1.0:
        out.append(lp.EtaLogitsWarper(epsilon=c.eta_cutoff))
    return out


@contextlib.contextmanager
def attached(capture: ProbsCapture | None, model: Any) -> Iterator[LogitsProcessorList | None]:
    if capture is None:
        yield None
        return
    with capture.attached(model) as processors:
        yield processors
