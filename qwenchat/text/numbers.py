"""Numbers the user types (an answer's number, a session's number): plain ASCII digits, and short.

`str.isdigit()` says yes to "²" and "①", which `int()` then refuses with a ValueError, and `int()` refuses
numbers of more than 4300 digits: every command that takes a number reads it here instead.
"""

from __future__ import annotations

from qwenchat.errors import UserError

MAX_DIGITS = 18  # more than any count in a chat; int() of it is instant


class NumberError(UserError, ValueError):
    """Not a number in range; one short line (the text is never repeated whole)."""


def plain_int(text: str) -> int | None:
    """`text` (surrounding spaces aside) as an int when it is 1 to MAX_DIGITS ASCII digits, else None."""
    text = text.strip()
    if not text or len(text) > MAX_DIGITS or not (text.isascii() and text.isdigit()):
        return None
    return int(text)


def parse_index(text: str, what: str, count: int) -> int:
    """A 1-based number from 1 to `count`, else NumberError: "<what> from 1 to <count>, got '…'"."""
    n = plain_int(text)
    if n is None or not 1 <= n <= count:
        shown = text.strip() if len(text.strip()) <= 20 else text.strip()[:19] + "…"
        raise NumberError(f"{what} from 1 to {count}, got {shown!r}")
    return n
