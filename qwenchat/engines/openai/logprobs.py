"""A chunk's `logprobs` (OpenAI chat completions: `logprobs.content[]` with `top_logprobs`), checked.

Called from openai_events' one validating step. A server says nothing about whether its numbers are before or
after its sampling settings, so every record is labelled `server`; it sends no token ids, so they are -1.
"""

from __future__ import annotations

import math
from typing import Any

from qwenchat.probs.record import MAX_TEXT, MAX_TOP_K, Alt, TokenProb

MAX_TOKENS_PER_EVENT = 4096  # more in one event is not a stream of tokens


class BadLogprobs(ValueError):
    """The logprobs of a chunk are not what the API describes (the message says how)."""


def parse_logprobs(value: Any) -> list[TokenProb] | None:
    """`choice["logprobs"]` as records; None when the server sent none."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise BadLogprobs("logprobs is not an object")
    content = value.get("content")
    if content is None:
        return None
    if not isinstance(content, list) or len(content) > MAX_TOKENS_PER_EVENT:
        raise BadLogprobs("logprobs.content is not a list of tokens")
    out = []
    for item in content:
        text, lp = _entry(item)
        tops = item.get("top_logprobs") or []
        if not isinstance(tops, list):
            raise BadLogprobs("top_logprobs is not a list")
        alts = [Alt(t_text, -1, t_lp) for t_text, t_lp in map(_entry, tops[:MAX_TOP_K])]
        alts.sort(key=lambda a: -a.logprob)
        out.append(TokenProb(id=-1, text=text, logprob=lp, top=alts, source="server"))
    return out


def _entry(item: Any) -> tuple[str, float]:
    if not isinstance(item, dict):
        raise BadLogprobs("a logprobs entry is not an object")
    token, lp = item.get("token"), item.get("logprob")
    if not isinstance(token, str):
        raise BadLogprobs("a logprobs token is not a string")
    if isinstance(lp, bool) or not isinstance(lp, (int, float)) or math.isnan(lp) or lp > 1e-6:
        raise BadLogprobs("a logprob is not a number ≤ 0")
    return _text(item, token)[:MAX_TEXT], max(float(lp), -1e30)


def _text(item: dict[str, Any], token: str) -> str:
    """The token's text: its UTF-8 `bytes` when they decode whole (a token may be part of a character)."""
    raw = item.get("bytes")
    if isinstance(raw, list) and raw and all(isinstance(b, int) and 0 <= b < 256 for b in raw):
        try:
            return bytes(raw).decode("utf-8")
        except UnicodeDecodeError:
            pass
    return token  # shown only through visible_controls, as all server text
