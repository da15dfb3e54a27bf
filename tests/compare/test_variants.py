"""The shared variant syntax (`:compare`, `--grid`) and the word diff (`:diff`, `--diff`)."""

import pytest

from qwenchat.compare.variants import MAX_VARIANTS, parse_variants, split_values
from qwenchat.settings import ConfigError
from qwenchat.text.worddiff import summarize, word_diff, words


def test_zipped_variants_pair_values_and_broadcast_single_ones():
    vs = parse_variants("temperature=0.2,1.0 seed=1,2 top_p=0.9")
    assert [v.label for v in vs] == ["A", "B"]
    assert vs[0].overrides == {"temperature": 0.2, "seed": 1, "top_p": 0.9}
    assert vs[1].overrides == {"temperature": 1.0, "seed": 2, "top_p": 0.9}
    assert vs[1].describe() == "temperature=1.0 seed=2 top_p=0.9"


def test_grid_is_the_cross_product_in_order():
    vs = parse_variants("temperature=0.2,1.0 seed=1,2,3", grid=True)
    assert len(vs) == 6
    assert [(v.overrides["temperature"], v.overrides["seed"]) for v in vs[:3]] == [
        (0.2, 1),
        (0.2, 2),
        (0.2, 3),
    ]
    assert vs[-1].label == "F"


def test_values_split_outside_quotes_and_brackets():
    assert split_values("['a','b'],['c']") == ["['a','b']", "['c']"]
    assert split_values("'x, y',z") == ["'x, y'", "z"]
    vs = parse_variants("stop_strings=['a','b'],['c'] system='You are terse, very.',@sys.txt")
    assert vs[0].overrides == {"stop_strings": ["a", "b"], "system": "You are terse, very."}
    assert vs[1].overrides == {"stop_strings": ["c"], "system": "@sys.txt"}


@pytest.mark.parametrize(
    "text",
    [
        "",
        "temperature",
        "=1,2",
        "temperature=1,,2",
        "temperature=1,2 seed=1,2,3",
        "seed=1,2 seed=3,4",
        "x=[1,2",
    ],
)
def test_bad_specs_are_one_clear_error(text):
    with pytest.raises(ConfigError) as info:
        parse_variants(text)
    assert "\n" not in str(info.value)


def test_too_many_variants_are_refused():
    values = ",".join(str(i) for i in range(MAX_VARIANTS + 1))
    with pytest.raises(ConfigError, match="at most"):
        parse_variants(f"seed={values}")
    with pytest.raises(ConfigError, match="at most"):
        parse_variants("seed=1,2,3,4,5,6 top_k=1,2,3,4,5", grid=True)


def test_summary_identical_whitespace_and_first_difference():
    assert summarize("a b c", "a b c").one_line() == "identical"
    s = summarize("a  b\nc", "a b c")
    assert (s.identical, s.same_words) == (False, True)
    s = summarize("the sea is deep and blue", "the sea is wide and blue")
    assert s.first_difference == 3 and not s.same_words
    assert s.left.startswith("deep") and s.right.startswith("wide")
    assert 0 < s.similarity < 1
    assert "word 4" in s.one_line()
    s = summarize("one two", "one two three")
    assert s.first_difference == 2 and s.left == "" and s.right == "three"


def test_word_diff_reconstructs_both_sides():
    a, b = "the quick brown fox jumps", "the slow brown dog jumps high"
    pieces = word_diff(a, b)
    left = " ".join(t for op, t in pieces if op in ("equal", "delete"))
    right = " ".join(t for op, t in pieces if op in ("equal", "insert"))
    assert words(left) == words(a) and words(right) == words(b)
    assert ("delete", "quick") in pieces and ("insert", "slow") in pieces
    assert word_diff("same", "same") == [("equal", "same")]
