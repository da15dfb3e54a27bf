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


# -- prompt logprobs (`:score`) ---------------------------------------------------------------
MAX_PROMPT_TOKENS = 1_000_000  # more is not a prompt
MATCH_SLACK = 64  # characters past the answer's length before the text match gives up


class NoPromptLogprobs(BadLogprobs):
    """The server's answer has no prompt logprobs: it cannot score a given answer."""


def parse_prompt_logprobs(data: Any, answer: str) -> list[TokenProb]:
    """The records of `answer`, the tail of the prompt a scoring request sent, from vLLM's `prompt_logprobs`
    (per prompt token: None for the first, else {token id: {logprob, rank, decoded_token}}) and, where the
    server sends them, `prompt_token_ids` (which entry is the prompt's token; without them, the first).
    The answer's tokens are those, counted from the end, whose texts join to `answer`."""
    if not isinstance(data, dict):
        raise BadLogprobs("the answer is not a JSON object")
    plp = data.get("prompt_logprobs")
    if plp is None:
        raise NoPromptLogprobs("no prompt_logprobs in the answer")
    if not isinstance(plp, list) or len(plp) > MAX_PROMPT_TOKENS:
        raise BadLogprobs("prompt_logprobs is not a list of tokens")
    ids = data.get("prompt_token_ids")
    if ids is not None and not (
        isinstance(ids, list) and len(ids) == len(plp) and all(_is_id(i) for i in ids)
    ):
        raise BadLogprobs("prompt_token_ids does not match prompt_logprobs")
    out: list[TokenProb] = []
    joined = ""
    lengths: list[int] = []  # joined text length after each record
    for i in range(len(plp) - 1, 0, -1):
        out.append(_prompt_entry(plp[i], ids[i] if ids is not None else None))
        joined = out[-1].text + joined
        lengths.append(len(joined))
        if joined == answer:
            return out[::-1]
        if len(joined) > len(answer) + MATCH_SLACK:
            break
    # Token texts that do not join exactly (a character split between tokens): the fewest tokens that
    # cover the answer's length.
    n = next((j + 1 for j, length in enumerate(lengths) if length >= len(answer)), None)
    if n is None:
        raise BadLogprobs("prompt_logprobs does not cover the answer")
    return out[:n][::-1]


def _is_id(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def _prompt_entry(entry: Any, token_id: int | None) -> TokenProb:
    if not isinstance(entry, dict) or not entry or len(entry) > MAX_TOP_K + 1:
        raise BadLogprobs("a prompt_logprobs entry is not an object of candidates")
    key = str(token_id) if token_id is not None else next(iter(entry))
    cands = []
    for k, info in entry.items():
        if not isinstance(info, dict):
            raise BadLogprobs("a prompt_logprobs candidate is not an object")
        lp = info.get("logprob")
        if isinstance(lp, bool) or not isinstance(lp, (int, float)) or math.isnan(lp) or lp > 1e-6:
            raise BadLogprobs("a prompt logprob is not a number ≤ 0")
        text = info.get("decoded_token")
        if text is not None and not isinstance(text, str):
            raise BadLogprobs("a decoded_token is not a string")
        cid = int(k) if isinstance(k, str) and k.isdigit() and len(k) < 12 else -1
        cands.append((k, Alt((text or "")[:MAX_TEXT], cid, max(float(lp), -1e30))))
    chosen = next((a for k, a in cands if k == key), None)
    if chosen is None:
        raise BadLogprobs("a prompt token is not among its prompt_logprobs entry")
    alts = sorted((a for _, a in cands), key=lambda a: -a.logprob)[:MAX_TOP_K]
    return TokenProb(id=chosen.id, text=chosen.text, logprob=chosen.logprob, top=alts, source="server")
