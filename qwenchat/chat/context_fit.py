"""Fitting a conversation into the context window: never truncate silently. The oldest exchanges are left
out of this turn's prompt, with a notice (the history keeps them), or, with `--overflow error`, the turn is
refused."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from qwenchat.engines.api import Engine, GenerationRequest
from qwenchat.errors import ChatError


def fit_context(
    engine: Engine, request: GenerationRequest, overflow: str, notice: Callable[[str], None]
) -> GenerationRequest:
    """Never truncate silently: drop the oldest exchanges with a notice, or refuse (--overflow error)
    with a ChatError."""
    window = engine.context_window
    if not window:
        return request
    budget = request.settings.get("max_new_tokens") or 0
    try:
        used = engine.count_tokens(request)
    except Exception:
        return request  # the template's error surfaces from the engine itself
    if used + budget <= window:
        return request
    if overflow == "error":
        raise ChatError(
            f"the conversation ({used} tokens) + max_new_tokens ({budget}) exceeds the {window}-token "
            "context; :undo, :clh or a smaller max_new_tokens"
        )
    msgs = list(request.messages)
    head = 1 if msgs and msgs[0]["role"] == "system" else 0
    dropped = 0
    while used + budget > window:
        # the oldest exchange: a user message and the answers up to the next user message
        end = head + 1
        while end < len(msgs) and msgs[end]["role"] != "user":
            end += 1
        if end >= len(msgs):  # only the current message is left
            raise ChatError(
                f"your message alone ({used} tokens) + max_new_tokens ({budget}) exceeds the "
                f"{window}-token context; shorten it or lower max_new_tokens"
            )
        del msgs[head:end]
        dropped += 1
        request = dataclasses.replace(request, messages=msgs)
        used = engine.count_tokens(request)
    notice(
        f"context full: the oldest {dropped} exchange{'s' if dropped > 1 else ''} not sent this turn "
        "(still in :his; --overflow error refuses instead)"
    )
    return request
