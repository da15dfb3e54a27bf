"""`:branch N K` / `:branch N "text"`: regenerate the last answer from its token N with another token there.

An engine that works on token ids (transformers, llama.cpp: they have `detokenize`) gets the first N-1
tokens of the answer as ids, exactly as they were, then the forced token; a server gets the same as text in
an assistant message it is asked to continue (`continue_final_message`; a server that cannot says so).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from qwenchat.engines.api import Engine, GenerationRequest, SupportsDetokenize
from qwenchat.errors import UserError
from qwenchat.probs.record import TokenProb
from qwenchat.text.numbers import parse_index


class BranchError(UserError):
    """A :branch that cannot be made (no recorded tokens, N or K out of range); nothing changed."""


@dataclass
class BranchPlan:
    shown: str  # the answer's first part, as text: kept tokens and the forced one
    kept: list[TokenProb]  # records of the kept tokens and of the forced one
    prefix_ids: list[int] | None = None  # None: the engine takes text (a server)
    prefix_text: str = ""  # forced text, tokenized by the engine
    by_ids: bool = field(default=False)

    def request(self, req: GenerationRequest) -> GenerationRequest:
        """The turn's request: for an id engine, the messages without the prefix answer plus the ids."""
        if not self.by_ids:
            return req
        return dataclasses.replace(
            req,
            messages=req.messages[:-1],
            continue_final=False,
            prefix_ids=list(self.prefix_ids or []),
            prefix_text=self.prefix_text,
        )


def plan_branch(engine: Engine, probs: list[TokenProb] | None, n_text: str, choice: str) -> BranchPlan:
    """The plan for `:branch N K` (choice = K, an alternative's rank) or `:branch N "text"`."""
    if not probs:
        raise BranchError("the last answer has no token data: turn :probs on, then answer or :retry")
    n = parse_index(n_text, "token", len(probs))
    kept = probs[: n - 1]
    by_ids = isinstance(engine, SupportsDetokenize) and all(p.id >= 0 for p in kept)
    text = _quoted(choice)
    if text is not None:
        if not text:
            raise BranchError('the forced text is empty; :branch N "text"')
        forced = TokenProb(id=-1, text=text, logprob=None, top=probs[n - 1].top, forced=True)
        forced_ids: list[int] = []
    else:
        alts = probs[n - 1].top
        if not alts:
            raise BranchError(f"token {n} has no alternatives recorded")
        alt = alts[parse_index(choice, "alternative", len(alts)) - 1]
        at = probs[n - 1]  # the same position, the same distributions: only the choice differs
        sampled = next((a for a in at.sampled_top or [] if a.id == alt.id and a.id >= 0), None)
        forced = dataclasses.replace(
            at,
            id=alt.id,
            text=alt.text,
            logprob=alt.logprob,
            sampled_logprob=sampled.logprob if sampled is not None else None,
            forced=True,
        )
        forced_ids = [alt.id]
        by_ids = by_ids and alt.id >= 0
        text = "" if by_ids else alt.text
    if by_ids:
        ids = [p.id for p in kept] + forced_ids
        shown = engine.detokenize(ids) + text
        return BranchPlan(shown, [*kept, forced], ids, text, by_ids=True)
    shown = "".join(p.text for p in kept) + (text or "")
    return BranchPlan(shown, [*kept, forced])


def _quoted(choice: str) -> str | None:
    """The text of `"text"` (or 'text'), None when `choice` is not quoted."""
    c = choice.strip()
    if len(c) >= 2 and c[0] == c[-1] and c[0] in "\"'":
        return c[1:-1]
    return None


def joined_probs(before: list[TokenProb] | None, new: list[TokenProb] | None) -> list[TokenProb] | None:
    """The records of a continued answer: both parts', or none when either part has none."""
    if before is None or new is None:
        return None
    return [*before, *new]
