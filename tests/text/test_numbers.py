"""Numbers the user types: ASCII digits only, and short."""

from __future__ import annotations

import pytest

from qwenchat.errors import UserError
from qwenchat.text.numbers import MAX_DIGITS, parse_index, plain_int


@pytest.mark.parametrize("text", ["", " ", "²", "①", "١", "-1", "+1", "1.0", "0x1", "1_0", "9" * 5000])
def test_plain_int_refuses_anything_but_short_ascii_digits(text):
    assert plain_int(text) is None


def test_plain_int_takes_ascii_digits():
    assert plain_int(" 42 ") == 42 and plain_int("007") == 7
    assert plain_int("9" * MAX_DIGITS) == int("9" * MAX_DIGITS)
    assert plain_int("9" * (MAX_DIGITS + 1)) is None


@pytest.mark.parametrize("text", ["0", "4", "²", "9" * 5000])
def test_parse_index_is_one_short_user_error(text):
    with pytest.raises(UserError) as info:
        parse_index(text, "an answer number", 3)
    msg = str(info.value)
    assert msg.startswith("an answer number from 1 to 3, got ") and len(msg) < 80


def test_parse_index_in_range():
    assert parse_index("3", "an answer number", 3) == 3
