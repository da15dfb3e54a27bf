import base64
import re

import pytest

from qwenchat.clipboard import SCREEN_CHUNK, code_blocks, last_code_block, osc52, support_note


def test_osc52_exact_bytes():
    assert osc52("hello", tmux=False, screen=False) == "\x1b]52;c;aGVsbG8=\x07"
    seq = osc52("héllo 🌍\n", tmux=False, screen=False)
    body = re.fullmatch(r"\x1b\]52;c;([A-Za-z0-9+/=]*)\x07", seq).group(1)
    assert base64.b64decode(body).decode("utf-8") == "héllo 🌍\n"
    assert osc52("", tmux=False, screen=False) == "\x1b]52;c;\x07"


def test_osc52_tmux_passthrough():
    assert osc52("hello", tmux=True) == "\x1bPtmux;\x1b\x1b]52;c;aGVsbG8=\x07\x1b\\"


def test_osc52_detects_tmux_and_screen_from_env(monkeypatch):
    monkeypatch.delenv("STY", raising=False)
    monkeypatch.setenv("TMUX", "/tmp/tmux-1000/default,123,0")
    assert osc52("hello").startswith("\x1bPtmux;")
    monkeypatch.delenv("TMUX")
    assert osc52("hello") == "\x1b]52;c;aGVsbG8=\x07"
    monkeypatch.setenv("STY", "123.pts-0.host")
    assert osc52("hello") == "\x1bP\x1b]52;c;aGVsbG8=\x07\x1b\\"


def test_osc52_screen_chunks():
    text = "x" * 3000
    out = osc52(text, tmux=False, screen=True)
    chunks = re.findall(r"\x1bP(.*?)\x1b\\", out, flags=re.S)
    assert len(chunks) > 1 and all(len(c.encode()) <= SCREEN_CHUNK < 768 for c in chunks)
    assert "".join(chunks) == osc52(text, tmux=False, screen=False)
    assert "".join(f"\x1bP{c}\x1b\\" for c in chunks) == out


def test_support_notes():
    assert support_note({"TERM": "xterm-256color"}) is None
    assert "tmux" in support_note({"TERM": "tmux-256color", "TMUX": "x"})
    assert "set-clipboard" in support_note({"TERM": "screen", "TMUX": "x"})
    assert "Linux console" in support_note({"TERM": "linux"})
    assert "Apple Terminal" in support_note({"TERM": "xterm-256color", "TERM_PROGRAM": "Apple_Terminal"})
    assert support_note({"TERM": "xterm"}, text="x" * 1000) is None
    assert "100 kB" in support_note({"TERM": "xterm"}, text="x" * 200_000)
    both = support_note({"TERM": "linux", "TMUX": "x"}, text="é" * 100_000)
    assert "Linux" in both and "tmux" in both and "200 kB" in both and "\n" not in both


def test_support_note_reads_environ_by_default(monkeypatch):
    monkeypatch.setenv("TERM", "linux")
    monkeypatch.delenv("TMUX", raising=False)
    assert "Linux console" in support_note()


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
