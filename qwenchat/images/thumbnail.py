"""A small picture of an image for the terminal, as data: rows of half-block cells, each the colour of its
upper and lower pixel. Only ui/ draws it (ui/images.py)."""

from __future__ import annotations

from typing import Any

RGB = tuple[int, int, int]


def half_blocks(image: Any, width: int = 24) -> list[list[tuple[RGB, RGB]]]:
    """The image (a PIL RGB image) scaled to `width` columns, two pixel rows per text row."""
    w, h = image.size
    cols = max(1, min(width, w))
    rows = max(1, round(h * cols / w / 2))  # a cell is about twice as tall as wide
    small = image.resize((cols, rows * 2))
    px = small.load()
    return [[(px[x, 2 * y], px[x, 2 * y + 1]) for x in range(cols)] for y in range(rows)]
