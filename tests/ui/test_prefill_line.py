"""The prefill progress line (qwenchat/ui/prefill_line.py) and where the answer view draws it."""

from __future__ import annotations

import io

from qwenchat.ui.prefill_line import PrefillLine, prefill_text


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_text_has_count_rate_and_time_left() -> None:
    assert prefill_text(3072, 6844, 3072 / 81) == "prefill 3,072/6,844 tokens · 81 tok/s · 47 s left"
    assert prefill_text(0, 6844, 0.0) == "prefill 0/6,844 tokens"


def test_a_short_prefill_shows_nothing_a_long_one_updates_in_place_and_is_erased() -> None:
    clock, out = Clock(), io.StringIO()
    line = PrefillLine(out, clock)
    clock.now = 0.1
    line.update(512, 1024)  # done in 0.2 s: not worth a line
    assert out.getvalue() == ""
    line = PrefillLine(out, clock)
    clock.now += 2.0
    line.update(512, 6844)
    clock.now += 2.0
    line.update(1024, 6844)
    shown = out.getvalue()
    assert shown.count("\r") == 2 and "\n" not in shown  # in place
    assert shown.endswith("\rprefill 1,024/6,844 tokens · 256 tok/s · 23 s left\x1b[K")
    line.clear()
    assert out.getvalue().endswith("\r\x1b[2K") and not line.shown
    line.clear()  # twice is harmless
    assert out.getvalue().count("\x1b[2K") == 1


def test_nowhere_to_draw_in_place_draws_nothing() -> None:
    clock = Clock()
    line = PrefillLine(None, clock)
    clock.now = 10.0
    line.update(1, 100)
    line.clear()
    assert not line.shown
