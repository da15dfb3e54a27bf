"""Scoring a given answer (`:score TEXT|@file`, a batch prompt's `reference`): how likely the model finds it
as the answer to the last user message, teacher-forced.

The engine (SupportsScore) computes each token's raw log-probability after the prompt the last turn had
(its own answer left out), so the model's own greedy answer scores exactly what `:probs` recorded for it.
Here: the request to score against, the numbers a score is summed up into, and a batch record's fields.
"""

from __future__ import annotations

import dataclasses
import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from qwenchat.engines.api import Engine, GenerationRequest, ScoreError, SupportsScore
from qwenchat.errors import first_line
from qwenchat.probs.record import DEFAULT_TOP_K, TokenProb

LEAST = 5  # the least likely tokens a score names


@dataclass(frozen=True)
class Score:
    """A scored answer: its tokens (with their alternatives) and what they sum up to."""

    tokens: list[TokenProb]
    total: float  # sum of the tokens' log-probabilities: log P(answer | prompt)
    mean: float
    ppl: float  # perplexity: exp(-mean)
    least: list[tuple[int, TokenProb]]  # (1-based index, token), least likely first

    @classmethod
    def of(cls, tokens: Sequence[TokenProb], least: int = LEAST) -> Score:
        scored = [(i, t) for i, t in enumerate(tokens, start=1) if t.logprob is not None]
        if not scored:
            raise ScoreError("the answer has no tokens to score")
        total = math.fsum(t.logprob for _, t in scored)  # type: ignore[misc]
        mean = total / len(scored)
        worst = sorted(scored, key=lambda it: it[1].logprob)[:least]  # type: ignore[arg-type, return-value]
        return cls(list(tokens), total, mean, math.exp(-mean), worst)

    def fields(self) -> dict[str, Any]:
        """What a batch record keeps of a reference's score."""
        return {
            "ref_logprob": round(self.total, 4),
            "ref_ppl": round(self.ppl, 4),
            "ref_tokens": len(self.tokens),
        }


class ScoringSession(Protocol):
    """What scoring needs of a chat session (chat.session.ChatSession is one)."""

    engine: Engine
    probs_k: int
    interrupts: int  # Ctrl-Cs so far

    def request(self, continue_final: bool = False, extra_user: str | None = None) -> GenerationRequest: ...

    def fit_context(self, request: GenerationRequest) -> GenerationRequest: ...

    def score(self, answer: str) -> Score:
        """score_last with the session's own cancel, so that Ctrl-C (interrupt) stops it."""
        ...


def scoring_request(request: GenerationRequest, k: int = DEFAULT_TOP_K) -> GenerationRequest:
    """The request whose prompt a scored answer follows: the messages up to the last user message (what
    came after it, the model's answer included, left out), a new assistant turn opened, `k` alternatives."""
    msgs = request.messages
    last = next((i for i in range(len(msgs) - 1, -1, -1) if msgs[i]["role"] == "user"), None)
    if last is None:
        raise ScoreError("there is no message of yours to score an answer to")
    return dataclasses.replace(
        request,
        messages=msgs[: last + 1],
        continue_final=False,
        prefix_ids=None,
        prefix_text="",
        json_schema=None,
        probs_k=k,
    )


def score_answer(
    engine: Engine, request: GenerationRequest, answer: str, cancel: threading.Event | None = None
) -> Score:
    """`answer` scored after the prompt of `request` (a scoring_request); ScoreError (one line) when the
    engine cannot, the answer is empty, or it was interrupted."""
    if not answer:
        raise ScoreError("the answer to score is empty")
    if not isinstance(engine, SupportsScore):
        raise ScoreError(f"{engine.name} cannot score an answer")
    return Score.of(engine.score(request, answer, cancel or threading.Event()))


def score_last(session: ScoringSession, answer: str, cancel: threading.Event | None = None) -> Score:
    """`answer` scored as the answer to the session's last user message (`:score`); changes nothing."""
    request = scoring_request(session.request(), session.probs_k or DEFAULT_TOP_K)
    return score_answer(session.engine, session.fit_context(request), answer, cancel)


def reference_fields(session: ScoringSession, reference: str | None) -> dict[str, Any]:
    """A batch record's score of the prompt's `reference` answer (none without one): its total
    log-probability and perplexity, or the line that says why it has none. After a Ctrl-C nothing is scored:
    the run is not finished, and the batch stops within a second."""
    if reference is None:
        return {}
    if session.interrupts:
        return {"ref_logprob": None, "ref_ppl": None, "ref_error": "interrupted"}
    try:
        return session.score(reference).fields()
    except ScoreError as exc:
        return {"ref_logprob": None, "ref_ppl": None, "ref_error": first_line(exc)}
