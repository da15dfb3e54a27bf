"""The per-token data of an answer in a session file (format 2): `probs` and `replaces` on a message.

Both are optional, so a format-1 file (which has neither) loads as it is. Read strictly: a hostile file gets
one SessionFormatError line, never a half-read conversation.
"""

from __future__ import annotations

from typing import Any

from qwenchat.probs.record import ProbsFormatError, probs_from_list, probs_to_list

MAX_REPLACED = 100  # answers replaced by :branch kept behind one answer; deeper is a hostile file


def extras_to_dict(msg: Any) -> dict[str, Any]:
    d: dict[str, Any] = {}
    if msg.probs is not None:
        d["probs"] = probs_to_list(msg.probs)
    if msg.replaces is not None:
        d["replaces"] = msg.replaces.to_dict()
    return d


def read_extras(m: dict[str, Any], where: str, message_cls: Any, error: type[Exception]) -> tuple[Any, Any]:
    """(probs, replaces) of message dict `m`; `replaces` is a chain of earlier answers, read iteratively."""
    if m.get("role") != "assistant":
        raise error(f"{where}: only an answer can carry token data or a replaced answer")
    head: Any = None
    tail: Any = None
    probs: Any = None
    current: Any = m
    for depth in range(MAX_REPLACED + 1):
        p = current.get("probs")
        try:
            p = None if p is None else probs_from_list(p, where)
        except ProbsFormatError as exc:
            raise error(str(exc)) from None
        if depth == 0:
            probs = p
        else:
            msg = message_cls("assistant", current["content"], current.get("interrupted", False), p)
            if head is None:
                head = msg
            else:
                tail.replaces = msg
            tail = msg
        nxt = current.get("replaces")
        if nxt is None:
            return probs, head
        if (
            m.get("role") != "assistant"
            or not isinstance(nxt, dict)
            or not isinstance(nxt.get("content"), str)
        ):
            raise error(f"{where}: 'replaces' must be an earlier answer (an object with its content)")
        if not isinstance(nxt.get("interrupted", False), bool):
            raise error(f"{where}: 'interrupted' must be true or false")
        current = nxt
    raise error(f"{where}: more than {MAX_REPLACED} replaced answers")
