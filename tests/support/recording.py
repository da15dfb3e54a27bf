"""Seeing what a real engine is asked: each request it streams, as the engine renders or encodes it."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any


@contextlib.contextmanager
def recorded(engine: Any, seen_as: Callable[[Any], Any]) -> Iterator[list[Any]]:
    """Within: `seen_as(request)` of each request `engine.stream` gets, in order (e.g. render_prompt)."""
    seen: list[Any] = []
    real = engine.stream

    def recording(request: Any, cancel: Any) -> Any:
        seen.append(seen_as(request))
        return real(request, cancel)

    engine.stream = recording
    try:
        yield seen
    finally:
        del engine.stream
