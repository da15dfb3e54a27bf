"""Other answers to the same message, kept beside the one in the history (`:compare` keeps its variants
there, `:pick` swaps one in). They live in the session file only: the prompt sees the message's content.

A session file may come from anywhere, so `parse_alternatives` checks every field strictly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from qwenchat.conversation.model import SessionFormatError

MAX_ALTERNATIVES = 200  # per message
MAX_LABEL_CHARS = 40
MAX_ALTERNATIVE_CHARS = 5_000_000
_SCALARS = (str, int, float, bool, type(None))


@dataclass(frozen=True)
class Alternative:
    content: str
    label: str  # "A", "B", ... ("orig": the answer a :pick replaced)
    settings: dict[str, Any] = field(default_factory=dict)  # what the variant ran with (seed, system, ...)
    interrupted: bool = False

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"label": self.label, "content": self.content, "settings": dict(self.settings)}
        if self.interrupted:
            d["interrupted"] = True
        return d


def _json_value(value: Any, depth: int = 0) -> bool:
    if isinstance(value, _SCALARS):
        return not isinstance(value, float) or value == value and abs(value) != float("inf")
    return isinstance(value, list) and depth < 4 and all(_json_value(v, depth + 1) for v in value)


def parse_alternatives(raw: Any, where: str) -> tuple[Alternative, ...]:
    """The `alternatives` list of one message; SessionFormatError naming the place on anything wrong."""
    if not isinstance(raw, list):
        raise SessionFormatError(f"{where}: 'alternatives' must be a list")
    if len(raw) > MAX_ALTERNATIVES:
        raise SessionFormatError(f"{where}: more than {MAX_ALTERNATIVES} alternatives")
    out = []
    for i, alt in enumerate(raw):
        here = f"{where}, alternative {i + 1}"
        if not isinstance(alt, dict):
            raise SessionFormatError(f"{here} is not an object")
        content, label = alt.get("content"), alt.get("label")
        if not isinstance(content, str) or len(content) > MAX_ALTERNATIVE_CHARS:
            raise SessionFormatError(f"{here} has no text content")
        if not isinstance(label, str) or not label or len(label) > MAX_LABEL_CHARS or not label.isprintable():
            raise SessionFormatError(f"{here}: 'label' must be a short printable string")
        settings = alt.get("settings", {})
        if not isinstance(settings, dict) or len(settings) > 200:
            raise SessionFormatError(f"{here}: 'settings' must be an object")
        for key, value in settings.items():
            if not isinstance(key, str) or len(key) > 100 or not _json_value(value):
                raise SessionFormatError(f"{here}: setting {key!r:.40} must be a number, string or list")
            if isinstance(value, str) and len(value) > MAX_ALTERNATIVE_CHARS:
                raise SessionFormatError(f"{here}: setting {key!r:.40} is too long")
        interrupted = alt.get("interrupted", False)
        if not isinstance(interrupted, bool):
            raise SessionFormatError(f"{here}: 'interrupted' must be true or false")
        out.append(Alternative(content, label, dict(settings), interrupted))
    return tuple(out)
