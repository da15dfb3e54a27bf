"""Word-level comparison of two answers: are they identical, where do they first differ, how similar are they.

Shared by `:compare`/`:diff` in the chat and `qwenchat diff` of batch results. Words are maximal runs of
non-space characters; whitespace differences alone do not make two answers differ in the summary (the
full diff still shows the words around them).
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

_WORD = re.compile(r"\S+")
CONTEXT_WORDS = 6


def words(text: str) -> list[str]:
    return _WORD.findall(text)


@dataclass(frozen=True)
class DiffSummary:
    identical: bool  # the very same text
    same_words: bool  # the same words, whitespace aside
    first_difference: int | None  # index of the first differing word; None when the words are the same
    similarity: float  # 0..1, difflib's ratio over words
    before: str  # a few words before the first difference, shared by both
    left: str  # the first differing words of each side
    right: str

    def one_line(self) -> str:
        if self.identical:
            return "identical"
        if self.same_words:
            return "same words, different whitespace"
        where = f"word {self.first_difference + 1}" if self.first_difference is not None else "start"
        context = f"…{self.before} " if self.before else ""
        return (
            f"differ from {where} ({self.similarity:.0%} similar): "
            f"{context}[{self.left or '∅'}] vs [{self.right or '∅'}]"
        )


def summarize(a: str, b: str) -> DiffSummary:
    wa, wb = words(a), words(b)
    if wa == wb:
        return DiffSummary(a == b, True, None, 1.0, "", "", "")
    first = next((i for i, (x, y) in enumerate(zip(wa, wb, strict=False)) if x != y), min(len(wa), len(wb)))
    ratio = difflib.SequenceMatcher(None, wa, wb, autojunk=False).ratio()
    before = " ".join(wa[max(0, first - CONTEXT_WORDS) : first])
    left = " ".join(wa[first : first + CONTEXT_WORDS])
    right = " ".join(wb[first : first + CONTEXT_WORDS])
    return DiffSummary(False, False, first, ratio, before, left, right)


def word_diff(a: str, b: str) -> list[tuple[str, str]]:
    """The full diff as (op, words) pieces in order: op is "equal", "delete" (only in a) or "insert" (only
    in b); a replacement is a delete followed by an insert. Joining the equal and delete pieces with spaces
    gives a's words; equal and insert give b's."""
    wa, wb = words(a), words(b)
    out: list[tuple[str, str]] = []
    matcher = difflib.SequenceMatcher(None, wa, wb, autojunk=False)
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        if op == "equal":
            out.append(("equal", " ".join(wa[i1:i2])))
            continue
        if i2 > i1:
            out.append(("delete", " ".join(wa[i1:i2])))
        if j2 > j1:
            out.append(("insert", " ".join(wb[j1:j2])))
    return out
