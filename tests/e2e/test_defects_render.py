"""Rendering, seen as a user sees it: the real program in a pseudo-terminal against the scripted
server, the screen read with the pyte terminal emulator (tests/support/defects_harness.py: with scrollback and
reflow on resize, as tmux and most terminals do)."""

from __future__ import annotations

import difflib
import re
import time

import pytest

from tests.support.defects_harness import Pty, answers, screen_lines, scripted_server, typed
from tests.support.pty_driver import ACCEPTED, READY

server = pytest.fixture(scripted_server)

FENCED = "Here is code:\n\n```python\nprint('hi')\n```\n\nDone."
COLOUR_SGR = re.compile(rb"\x1b\[(?:[0-9;]*;)?(?:3[0-7]|38|4[0-7]|48)[;m]")


def session(server, *lines: str, cols: int = 100, rows: int = 40, env: dict[str, str] | None = None) -> Pty:
    return typed("--endpoint", server.url, "--no-autosave", lines=lines, cols=cols, rows=rows, env=env)


def answer_bytes(t: Pty) -> list[bytes]:
    """What each accepted line printed before the next prompt, raw."""
    out, parts, at = t.out, [], 0
    while (start := out.find(ACCEPTED, at)) >= 0:
        end = out.find(READY, start)
        parts.append(out[start : end if end >= 0 else len(out)])
        at = start + 1
    return parts


# -- NO_COLOR -------------------------------------------------------------------------------------
def test_no_color_keeps_the_markdown_layout(server):
    server.script = answers(FENCED)
    t = session(server, "show code", ":markdown on", "again", env={"NO_COLOR": "1"})
    first, _, second = answer_bytes(t)[:3]
    for shown in (first, second):
        text = shown.decode("utf-8", "replace")
        assert "print('hi')" in text, text
        assert "```" not in text, f"the fence was printed raw:\n{text}"
        assert not COLOUR_SGR.search(shown), "NO_COLOR still means no colour"


# -- soft line breaks -----------------------------------------------------------------------------
def test_single_newlines_in_a_paragraph_are_kept(server):
    server.script = answers("Repeat these two lines exactly:\n\nalpha line\nbeta line\n")
    t = session(server, "repeat")
    lines = [line.strip() for line in screen_lines(t.out, 100, 40)]
    assert "alpha line" in lines and "beta line" in lines, lines


# -- notices ---------------------------------------------------------------------------------------
def test_notices_have_no_markup_or_escapes(server):
    server.script = answers("A summary of the log.", finish="length")
    t = session(
        server, '"""', "Summarize this log:", "2026-12-01 boot ok", '"""', ":retry 5", ":continue", ":undo"
    )
    lines = screen_lines(t.out, 100, 40)
    bad = [line for line in lines if "`" in line or "\\n" in line]
    assert not bad, bad


# -- :continue in a code block ----------------------------------------------------------------------
def _style_before(word: bytes, shown: bytes) -> bytes | None:
    """The SGR sequence that styles the first `word` in `shown` (None when it is not styled)."""
    m = re.search(rb"(\x1b\[[0-9;]*m)[ ]*" + word, shown)
    return m.group(1) if m else None


CUT = "Here:\n\n```python\ndef f(x):\n    return x"  # stopped at max_new_tokens inside the block
REST = " + 1\n\ndef g(y):\n    return y\n```\n"


def test_continue_inside_a_python_block_keeps_its_highlighting(server):
    first_turn = answers(CUT, finish="length")
    server.script = lambda h, body: (first_turn if len(server.requests) == 1 else answers(REST))(h, body)
    t = session(server, "write f", ":continue")
    first, cont = answer_bytes(t)[:2]
    keyword = _style_before(b"return", first)
    assert keyword is not None, first  # the harness sees highlighting at all
    assert _style_before(b"return", cont) == keyword, "the continued code is not highlighted as python"


# -- a resize mid-answer -----------------------------------------------------------------------------
CODE = "\n".join(f"    def method_{i:02d}(self, key, value=None):  # step {i}" for i in range(60))
LONG = f"Here is the module you asked for.\n\n```python\nclass LRU:\n{CODE}\n```\n\nThat is all.\n"


def _answer_lines(lines: list[str]) -> list[str]:
    start = max(i for i, line in enumerate(lines) if line.startswith("● "))
    end = max(i for i, line in enumerate(lines) if "That is all." in line)
    return lines[start : end + 1]


def _stream_long_answer(server, sizes: list[tuple[float, int, int]]) -> list[str]:
    """LONG streamed a line every 0.08 s into a 100x40 pty, resized after each (seconds, cols, rows);
    returns the answer as the terminal finally shows it (scrollback and screen)."""
    server.script = answers(LONG, pieces=0, delay=0.08 if sizes else 0.0)
    cols, rows = (100, 40) if sizes else (140, 45)
    t = Pty("--endpoint", server.url, "--no-autosave", cols=cols, rows=rows)
    resizes = []
    try:
        t.wait_prompt()
        t.type("write the module")
        t.at_prompt = False
        t.expect("method_00", timeout=30)
        for seconds, c, r in sizes:
            t.pump(seconds)
            resizes.append((len(t.out), c, r))
            t.resize(c, r)
        t.expect("That is all.", timeout=30)
        t.wait_prompt()
        t.pump(0.2)
    finally:
        t.kill()
    return _answer_lines(screen_lines(t.out, cols, rows, resizes))


def test_long_code_answer_renders_each_line_once(server):
    """Sanity (passes today): the harness sees the one-shot render."""
    lines = _stream_long_answer(server, [])
    for i in range(60):
        assert sum(f"def method_{i:02d}(" in line for line in lines) == 1, lines


@pytest.mark.timeout(60)
def test_resize_mid_answer_leaves_the_same_scrollback_as_one_shot(server):
    expected = _stream_long_answer(server, [])
    t0 = time.monotonic()
    got = _stream_long_answer(server, [(1.5, 90, 30), (1.5, 140, 45)])
    assert time.monotonic() - t0 < 30
    diff = "\n".join(difflib.unified_diff(expected, got, "one-shot", "resized", lineterm=""))
    assert got == expected, diff


# -- the demo model (slow by the demo_process fixture: loads, or converts, the real model) ---------------
def test_banner_says_the_demo_is_dequantized(demo_process):
    t = Pty("--demo", "--no-autosave")
    try:
        t.wait_prompt(timeout=300)
        banner = t.text()
        assert t.quit() == 0
    finally:
        t.kill()
    assert "dequantized from Q4_K_M" in banner, banner


@pytest.mark.timeout(900)
def test_first_run_conversion_shows_one_progress_bar(demo_process, tmp_path):
    """The first run converts the GGUF (1-2 minutes on 2 cores): one bar updated in place, not a stack
    of `Converting and de-quantizing GGUF tensors` lines."""
    t = Pty("--demo", "--no-autosave", env={"QWENCHAT_CACHE_DIR": str(tmp_path / "cache")})
    try:
        t.wait_prompt(timeout=800)
        assert t.quit() == 0
    finally:
        t.kill()
    # The status line is transient: look at the screen while the tensors are converted, not only at the end.
    shown = [m.end() for m in re.finditer(rb"GGUF tensors", t.out)]
    assert shown, "the conversion step is not named"
    for at in [*shown[:: max(1, len(shown) // 8)], len(t.out)]:
        lines = screen_lines(t.out[: at + 200], 100, 40)
        stacked = [line for line in lines if "GGUF tensors" in line]
        assert len(stacked) <= 1, "\n".join(stacked)
