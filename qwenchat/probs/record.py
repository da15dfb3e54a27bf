"""Token probabilities of an answer (`:probs`, `:alt`, `:branch`): the record, its file form, the summary.

Torch-free: engines fill `TokenProb`s, the session keeps them on the answer, the UI draws them. Two
distributions differ and are never mixed up: `raw` is the model's own (softmax of its logits, before any
sampling setting); `sampled` is the one the token was drawn from (after temperature, top-k, top-p, ...), only
recorded when the engine sampled and can tell. A server's numbers are labelled `server`: the API does not
say which of the two it reports.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from qwenchat.errors import UserError

DEFAULT_TOP_K = 5
MAX_TOP_K = 20  # OpenAI's top_logprobs limit; plenty for a terminal
SOURCES = ("raw", "server")
MAX_TEXT = 200  # a token's text in a session file; longer is a hostile file


class ProbsFormatError(UserError, ValueError):
    """Per-token data in a session file that cannot be read; the message says where."""


@dataclass(frozen=True)
class Alt:
    """One candidate at a position: its text, its token id (-1 when a server gives none), its logprob."""

    text: str
    id: int
    logprob: float

    @property
    def prob(self) -> float:
        return math.exp(self.logprob)


@dataclass
class TokenProb:
    """One answer token: what was chosen and what else the model considered.

    `logprob`/`top` are from the distribution named by `source`; `sampled_logprob`/`sampled_top` from the
    distribution the token was actually chosen from (after temperature, top-k, top-p, repetition penalty),
    when the engine can tell and it differs from the raw one (None under plain greedy decoding).
    `logprob` is None for a token forced by `:branch "text"`."""

    id: int
    text: str
    logprob: float | None
    top: list[Alt] = field(default_factory=list)
    source: str = "raw"
    sampled_logprob: float | None = None
    sampled_top: list[Alt] | None = None
    forced: bool = False  # put there by :branch, not chosen by the model

    @property
    def prob(self) -> float | None:
        return None if self.logprob is None else math.exp(self.logprob)

    def rank(self) -> int | None:
        """1 when no candidate is more likely than the chosen token (ties share a rank: bf16 logits tie
        often); None when it is not among the top-k."""
        for alt in self.top:
            if (alt.id == self.id and alt.id >= 0) or (alt.id < 0 and alt.text == self.text):
                return 1 + sum(1 for a in self.top if a.logprob > alt.logprob)
        return None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "id": self.id,
            "text": self.text,
            "logprob": self.logprob,
            "top": [[a.text, a.id, a.logprob] for a in self.top],
        }
        if self.source != "raw":
            d["source"] = self.source
        if self.sampled_logprob is not None:
            d["sampled_logprob"] = self.sampled_logprob
        if self.sampled_top is not None:
            d["sampled_top"] = [[a.text, a.id, a.logprob] for a in self.sampled_top]
        if self.forced:
            d["forced"] = True
        return d

    @classmethod
    def from_dict(cls, data: Any, where: str) -> TokenProb:
        """Strict: a wrong type anywhere is a ProbsFormatError naming the place."""
        if not isinstance(data, dict):
            raise ProbsFormatError(f"{where}: not an object")
        tok_id, text = data.get("id"), data.get("text")
        if not _is_int(tok_id) or not isinstance(text, str) or len(text) > MAX_TEXT:
            raise ProbsFormatError(f"{where}: 'id' must be an integer and 'text' a short string")
        source = data.get("source", "raw")
        if source not in SOURCES:
            raise ProbsFormatError(f"{where}: unknown 'source' {source!r}")
        forced = data.get("forced", False)
        if not isinstance(forced, bool):
            raise ProbsFormatError(f"{where}: 'forced' must be true or false")
        sampled_top = data.get("sampled_top")
        return cls(
            id=tok_id,
            text=text,
            logprob=_logprob(data.get("logprob"), where, optional=True),
            top=_alts(data.get("top", []), where),
            source=source,
            sampled_logprob=_logprob(data.get("sampled_logprob"), where, optional=True),
            sampled_top=None if sampled_top is None else _alts(sampled_top, where),
            forced=forced,
        )


MAX_HELD = 4  # a UTF-8 character is at most 4 bytes, so at most 4 byte-level tokens


class WholeChars:
    """The answer's tokens as text that never splits a character: a token that ends inside a multi-byte
    character (CJK, emoji: byte-level tokenizers cut them) shows nothing, and the token that completes it
    shows the whole character, instead of a U+FFFD for each half."""

    def __init__(self, decode: Callable[[list[int]], str]) -> None:
        self.decode = decode
        self._held: list[int] = []

    def text(self, token: int) -> str:
        self._held.append(token)
        text = self.decode(self._held)
        if text.endswith("\ufffd") and len(self._held) < MAX_HELD:
            return ""  # the character goes on in the next token
        self._held = []
        return text


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _logprob(v: Any, where: str, *, optional: bool = False) -> float | None:
    if v is None and optional:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not (v <= 0.0 or math.isclose(v, 0.0)):
        raise ProbsFormatError(f"{where}: a logprob must be a number ≤ 0")
    if math.isnan(v) or (math.isinf(v) and v > 0):
        raise ProbsFormatError(f"{where}: a logprob must be a number ≤ 0")
    return float(v)


def _alts(raw: Any, where: str) -> list[Alt]:
    if not isinstance(raw, list) or len(raw) > MAX_TOP_K:
        raise ProbsFormatError(f"{where}: 'top' must be a list of at most {MAX_TOP_K} candidates")
    out = []
    for item in raw:
        if not (isinstance(item, list) and len(item) == 3 and isinstance(item[0], str) and _is_int(item[1])):
            raise ProbsFormatError(f"{where}: a candidate must be [text, id, logprob]")
        if len(item[0]) > MAX_TEXT:
            raise ProbsFormatError(f"{where}: a candidate's text is too long")
        out.append(Alt(item[0], item[1], _logprob(item[2], where)))  # type: ignore[arg-type]
    return out


def probs_to_list(probs: Sequence[TokenProb]) -> list[dict[str, Any]]:
    return [p.to_dict() for p in probs]


def probs_from_list(data: Any, where: str) -> list[TokenProb]:
    if not isinstance(data, list):
        raise ProbsFormatError(f"{where}: 'probs' must be a list")
    return [TokenProb.from_dict(d, f"{where}, token {i + 1}") for i, d in enumerate(data)]


# -- summary -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Summary:
    tokens: int  # tokens with a logprob (forced ones have none)
    mean_logprob: float
    perplexity: float
    least: list[tuple[int, TokenProb]]  # (1-based index, token), least probable first


def summarize(probs: Sequence[TokenProb], least: int = 5) -> Summary:
    """Mean log-probability and perplexity (exp of minus the mean) over the chosen tokens, and the
    `least` least-confident positions."""
    scored = [(i, p) for i, p in enumerate(probs, start=1) if p.logprob is not None]
    if not scored:
        return Summary(0, 0.0, 1.0, [])
    mean = sum(p.logprob for _, p in scored) / len(scored)  # type: ignore[misc]
    worst = sorted(scored, key=lambda ip: ip[1].logprob)[:least]  # type: ignore[arg-type, return-value]
    return Summary(len(scored), mean, math.exp(-mean), worst)


def parse_k(text: str) -> int:
    """The `k` of `:probs on K`: 1 to MAX_TOP_K."""
    from qwenchat.text.numbers import parse_index

    return parse_index(text, "k", MAX_TOP_K)


def answer_prefix(
    prefix_ids: list[int] | None, prefix_text: str, tokenize: Callable[[str], list[int]]
) -> list[int]:
    """The ids `:branch` puts at the start of the answer: the kept tokens, then the forced text's."""
    ids = list(prefix_ids or [])
    if prefix_text:
        ids += tokenize(prefix_text)
    return ids
