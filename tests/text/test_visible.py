"""The one sanitising step: control characters shown, not sent (qwenchat.text.visible)."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from qwenchat.text.visible import VisibleStream, visible_controls

# Every character a terminal may obey: C0 but newline and tab, DEL, C1; and lone surrogates (unencodable).
UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff]")
# Text full of the interesting characters, not only the odd one in a sea of letters.
nasty = st.lists(
    st.one_of(
        st.characters(min_codepoint=0, max_codepoint=0x20),
        st.characters(min_codepoint=0x7B, max_codepoint=0xA0),
        st.sampled_from(["\r\n", "\ud800", "\udfff", "é", "✓", "[", "]"]),
    )
).map("".join)


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("\x1b]0;TITLE\x07", "␛]0;TITLE␇"),
        ("\x1b[2JWIPED", "␛[2JWIPED"),
        ("safe\rrm -rf ~", "safe␍rm -rf ~"),
        ("abc\x08\x08XYZ", "abc␈␈XYZ"),
        ("\x9b2J \x9d0;T\x9c", "␛[2J ␛]0;T␛\\"),  # C1 as ESC and its 7-bit letter (ECMA-48)
        ("\x00\x7f", "␀␡"),
        ("A\ud800B", "A\ufffdB"),
        ("line\r\nnext\n\tcode\x0b\x0c", "line\nnext\n\tcode␋␌"),
    ],
)
def test_controls_are_shown(raw, shown):
    assert visible_controls(raw) == shown


@pytest.mark.parametrize("text", ["", "plain ümlaut ✓ 中文 🙂", "a\n\tb\n", "\\x1b is four characters"])
def test_safe_text_is_untouched(text):
    assert visible_controls(text) is text


@given(nasty)
def test_nothing_unsafe_is_left_and_the_text_stays(text):
    out = visible_controls(text)
    assert not UNSAFE.search(out)
    out.encode("utf-8")  # no lone surrogate reaches the console encoder
    assert out.count("\n") == text.count("\n") and out.count("\t") == text.count("\t")
    rest = iter(out)  # the printable characters are all there, in order
    assert all(c in rest for c in text if c.isprintable())


@given(nasty, st.lists(st.integers(0, 12), max_size=20))
def test_a_stream_cut_anywhere_shows_what_the_whole_text_shows(text, cuts):
    stream = VisibleStream()
    pieces, pos = [], 0
    for n in cuts:
        pieces.append(stream.feed(text[pos : pos + n]))
        pos += n
    pieces.append(stream.feed(text[pos:]))
    pieces.append(stream.flush())
    assert "".join(pieces) == visible_controls(text)


def test_a_crlf_cut_in_two_is_one_newline():
    stream = VisibleStream()
    assert stream.feed("a\r") == "a"
    assert stream.feed("\nb\r") == "\nb"
    assert stream.flush() == "␍"
    assert stream.flush() == ""
