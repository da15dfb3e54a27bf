"""Images on the session's side: those waiting for the next message (`:image`, `--image`), the check that
the engine takes them, and what a loaded session's images became (gone or changed files).

A loaded session whose image is gone or changed goes on without it: the message keeps the image's record
(as `missing_images`, saved with the session) but the model no longer sees it, and a notice says so, once per
image. Refusing every later turn instead would make the whole session unusable for one moved file."""

from __future__ import annotations

import dataclasses
from typing import Any

from qwenchat.conversation.model import Conversation
from qwenchat.engines import api
from qwenchat.errors import ChatError
from qwenchat.images.load import status
from qwenchat.images.ref import ImageRef


def takes_images(engine: Any) -> bool:
    """Whether the engine takes images now (a pasted image path is offered as an attachment only then)."""
    return isinstance(engine, api.SupportsImages) and engine.takes_images


def refuse_unless_images(engine: Any) -> None:
    """ChatError (one line) unless the engine takes images now."""
    if not isinstance(engine, api.SupportsImages):
        raise ChatError(f"{engine.name} takes text only: load a vision chat model to send images")
    if not engine.takes_images:
        raise ChatError(
            f"{engine.name} takes no images as loaded (a GGUF needs its projector: --mmproj FILE)"
        )


def check_request(engine: Any, messages: list[dict[str, Any]]) -> None:
    """A conversation with images cannot go to an engine that takes none (a session loaded into a text
    model): one line, instead of answers that silently ignore the images."""
    if api.has_images(messages):
        try:
            refuse_unless_images(engine)
        except ChatError as exc:
            raise ChatError(f"this conversation has images; {exc}") from None


def token_count(engine: Any, images: list[ImageRef], settings: dict[str, Any]) -> list[int | None]:
    """Each image's prompt tokens with these settings, where the engine can tell."""
    if not isinstance(engine, api.SupportsImages):
        return [None] * len(images)
    return [engine.image_tokens(r, settings) for r in images]


def settle_loaded(conversation: Conversation) -> list[str]:
    """Check the images of a loaded conversation against their files; move those gone or changed to the
    message's `missing_images` (the conversation goes on without them) and return one notice for each."""
    notices = []
    msgs = conversation.messages
    for i, m in enumerate(msgs):
        if not m.images:
            continue
        kept, lost = [], list(m.missing_images)
        for ref in m.images:
            problem = status(ref)
            if problem is None:
                kept.append(ref)
                continue
            lost.append(ref)
            notices.append(
                f"image {ref.label} of message {i + 1} {problem}: the conversation goes on without it "
                "(its record stays in the session)"
            )
        if len(kept) != len(m.images):
            msgs[i] = dataclasses.replace(m, images=tuple(kept), missing_images=tuple(lost))
    return notices


def image_token_line(session: Any) -> str | None:
    """What `:tokens` adds for images: how many of the prompt's tokens are theirs (the conversation's and
    those waiting for the next message); None without images."""
    refs = [r for m in session.conversation.messages for r in m.images] + list(session.images)
    if not refs:
        return None
    counts = token_count(session.engine, refs, session.settings.effective())
    n = len(refs)
    what = f"{n} image{'s' if n > 1 else ''}"
    if any(c is None for c in counts):
        return f"{what} (the server counts their tokens)"
    waiting = f", {len(session.images)} waiting for your next message" if session.images else ""
    return f"of them, {sum(counts):,} image tokens: {what}{waiting}"
