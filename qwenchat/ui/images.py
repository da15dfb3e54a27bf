"""The attachment line of an image (name, size, pixels, tokens) and, where the terminal has colour, a small
half-block thumbnail (qwenchat.images.thumbnail gives its cells; none with --no-color or in a pipe)."""

from __future__ import annotations

from collections.abc import Sequence

from rich.style import Style
from rich.text import Text

from qwenchat.images.ref import ImageRef

THUMB_COLUMNS = 24


def attachment_line(ref: ImageRef, tokens: int | None) -> str:
    counted = f", {tokens:,} tokens" if tokens is not None else ""
    return f"image {ref.describe()[:-1]}{counted})"


def thumbnail(cells: Sequence[Sequence[tuple[tuple[int, int, int], tuple[int, int, int]]]]) -> Text:
    """Each cell an upper half block: its colour the upper pixel, its background the lower."""
    text = Text()
    for r, row in enumerate(cells):
        if r:
            text.append("\n")
        for top, bottom in row:
            text.append(
                "▀",
                Style(
                    color=f"rgb({top[0]},{top[1]},{top[2]})",
                    bgcolor=f"rgb({bottom[0]},{bottom[1]},{bottom[2]})",
                ),
            )
    return text
