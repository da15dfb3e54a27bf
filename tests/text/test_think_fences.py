"""Markdown answers (text/fences.py): code fences for :copy, :export and :continue; think splitting."""

import pytest

from qwenchat.text.fences import (
    closing_fence,
    code_blocks,
    fences,
    last_code_block,
    one_line,
    open_fence,
    reopening_fence,
)
from qwenchat.text.think import split_think

# -- code blocks ------------------------------------------------------------------------------------------


def test_no_code_block():
    assert last_code_block("just text with `inline` code") is None
    assert code_blocks("") == []
    assert last_code_block("```\n   \n```") is None  # only blank lines: nothing to copy


def test_several_blocks_last_wins():
    md = "Intro\n```python\nprint(1)\n```\nthen\n~~~bash\nls -l\necho ok\n~~~\nbye\n"
    assert code_blocks(md) == ["print(1)", "ls -l\necho ok"]
    assert last_code_block(md) == "ls -l\necho ok"


def test_fence_rules():
    md = "````md\n```python\nx\n```\n````\n"
    assert code_blocks(md) == ["```python\nx\n```"]  # a shorter inner fence does not close
    md = "~~~\n```\nstill inside\n~~~\n"
    assert code_blocks(md) == ["```\nstill inside"]
    md = "```py\nx\n```not-a-close\ny\n```\n"
    assert code_blocks(md) == ["x\n```not-a-close\ny"]
    assert code_blocks("```a``` is inline\n```\nreal\n```") == ["real"]
    assert code_blocks("```\r\nwin\r\n```\r\n") == ["win"]


def test_indented_fence_in_list_item():
    md = "1. Install:\n   ```bash\n   pip install x\n     --flag\n   ```\n2. Done"
    assert last_code_block(md) == "pip install x\n  --flag"


def test_unclosed_fence_runs_to_end():
    md = "Here:\n```python\ndef f():\n    return 1\n"
    assert last_code_block(md) == "def f():\n    return 1"


def test_code_inside_think_is_ignored():
    md = "<think>\nmaybe\n```\nthought code\n```\n</think>\n\nAnswer:\n```\nreal code\n```"
    assert code_blocks(md) == ["real code"]
    assert last_code_block("<think>```\nonly thinking\n```</think>no code") is None
    # The prompt opened the block (DeepSeek-R1 style): only the closing tag appears.
    assert code_blocks("```\nthought\n```\n</think>\nok\n```\nanswer\n```") == ["answer"]
    # Cut off while thinking: nothing is an answer yet.
    assert last_code_block("<think>\n```\nhalf") is None


@pytest.mark.parametrize("fence", ["```", "~~~", "`````"])
def test_any_language_and_fence(fence):
    assert last_code_block(f'{fence}rust title="x"\nfn main() {{}}\n{fence}') == "fn main() {}"


# -- open fences (:export closes them, :continue goes on inside them) ------------------------------------


def test_open_fence():
    assert open_fence("```\nx\n```") is None and open_fence("a\n~~~~py\nx") == "~~~~"


def test_open_fence_only_when_it_runs_to_the_end():
    assert open_fence("Sure:\n````python\nprint(1)") == "````"
    assert open_fence("```\nx\n\n\n") == "```"  # trailing blank lines are still inside it
    assert open_fence("```a``` is inline\nno fence") is None
    # A list item's fence ends with the item; what follows is not code.
    assert open_fence("1. x\n   ```py\n   a\nb") is None
    assert open_fence("1. x\n   ```py\n   a") == "```"
    assert closing_fence("1. x\n   ```py\n   a") == "   ```"
    assert closing_fence("text\n~~~\ncode") == "~~~" and closing_fence("done") is None


def test_reopening_fence_keeps_the_language():
    """:continue reopens the fence for the renderer with its info string: the rest is highlighted alike."""
    assert reopening_fence("Here:\n\n```python\ndef f(x):\n    return x") == "```python"
    assert reopening_fence("a\n~~~~rust title=x\nfn") == "~~~~rust title=x"
    assert reopening_fence("```\nplain") == "```"
    assert reopening_fence("```py\nx\n```\ndone") is None


def test_one_line_previews_user_text():
    assert one_line("Summarize this log:\n2026-12-01 boot ok\n") == "Summarize this log: 2026-12-01 boot ok"
    assert one_line("a\tb\r\n\x1b[31mc") == "a b [31mc"  # no control character survives
    cut = one_line("word " * 40, 20)
    assert len(cut) == 20 and cut.endswith("…") and "\n" not in cut


def test_fences_report_what_the_renderer_sees():
    (f,) = fences("> ```py\n> quoted\n> ```\n")
    assert (f.markup, f.info, f.code, f.closed, f.at_end) == ("```", "py", "quoted", True, False)
    (f,) = fences("- a\n  ```\n  code")
    assert (f.code, f.closed, f.at_end, f.indent) == ("code", False, True, "  ")


# -- think blocks -------------------------------------------------------------------------------------------


def test_split_think_shapes():
    assert split_think("plain") == (None, "plain")
    assert split_think("  <think>a</think>\n\nb") == ("a", "b")
    assert split_think("<think><think>a</think>b") == ("a", "b")
    assert split_think("a</think>b") == ("a", "b")  # the prompt opened the block
    assert split_think("<think>cut") == ("cut", "")
    assert split_think("x <think>y</think> z") == ("x <think>y", "z")  # as the streaming splitter decides
