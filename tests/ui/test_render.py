"""The renderer: streaming markdown, think blocks, plain modes.

Terminal output is replayed through a tiny terminal emulator (`screen`) so that the live region's redraws and
erasures are applied: what is left is what the user sees in scrollback.
"""

from __future__ import annotations

import io
import re
from types import SimpleNamespace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from markdown_it import MarkdownIt
from rich.console import Console
from rich.markdown import Markdown

from qwenchat.engines.api import TurnStats
from qwenchat.text.think import ThinkSplitter, prompt_opens_think
from qwenchat.ui.markdown_stream import AnswerMarkdown, BlockStream, split_preview
from qwenchat.ui.render import Renderer
from qwenchat.ui.terminal import LiveRegion, make_console

WIDTH, HEIGHT = 80, 25

# -- a tiny terminal ------------------------------------------------------------------------------------
_TOKEN = re.compile(r"\x1b\[([0-9;?]*)([A-Za-z])|\x1b\]8;[^\x1b]*\x1b\\|(\r)|(\n)|([^\x1b\r\n]+)")
_SGR = re.compile(r"\x1b\[[0-9;]*m|\x1b\]8;[^\x1b]*\x1b\\")


def screen(data: str) -> list[str]:
    """What scrollback holds after `data`: text, CR, LF, cursor up (A) and down (B, not below the last line),
    erase line (K), erase below (J)."""
    lines = [""]
    row = col = 0
    for m in _TOKEN.finditer(data):
        params, cmd, cr, lf, text = m.groups()
        if text:
            line = lines[row].ljust(col)
            lines[row] = line[:col] + text + line[col + len(text) :]
            col += len(text)
        elif lf:
            row, col = row + 1, 0
            if row == len(lines):
                lines.append("")
        elif cr:
            col = 0
        elif cmd == "A":
            row = max(0, row - int(params or 1))
        elif cmd == "B":
            row = min(len(lines) - 1, row + int(params or 1))
        elif cmd == "K":
            lines[row] = "" if params == "2" else lines[row][:col]
        elif cmd == "J":
            lines[row] = lines[row][:col]
            del lines[row + 1 :]
        elif cmd == "G":
            col = int(params or 1) - 1
    return lines


def norm(lines: list[str]) -> list[str]:
    out = [line.rstrip() for line in lines]
    while out and not out[-1]:
        out.pop()
    while out and not out[0]:
        out.pop(0)
    return out


def visible(data: str) -> list[str]:
    return norm(screen(_SGR.sub("", data)))


def terminal(width: int = WIDTH, height: int = HEIGHT, record: bool = False) -> Console:
    return Console(
        file=io.StringIO(),
        force_terminal=True,
        width=width,
        height=height,
        color_system="truecolor",
        record=record,
    )


def one_shot(md: str, width: int = WIDTH) -> list[str]:
    """The reference: the whole answer rendered at once."""
    c = terminal(width)
    c.print(AnswerMarkdown(md))
    return visible(c.file.getvalue())


class Clock:
    def __init__(self, step: float = 0.01) -> None:
        self.t = 0.0
        self.step = step

    def __call__(self) -> float:
        self.t += self.step
        return self.t


def stream(
    chunks: list[str],
    *,
    console: Console | None = None,
    reason: str = "stop",
    interval: float = 0.0,
    think: str = "fold",
    markdown: bool = True,
    think_open: bool | None = None,
) -> tuple[str, object]:
    console = console or terminal()
    r = Renderer(console, markdown=markdown, think=think, refresh_interval=interval, clock=Clock())
    view = r.answer("test-model", think_open=think_open)
    for c in chunks:
        view.feed(c)
    view.end(reason)
    return console.file.getvalue(), view


def chop(text: str, sizes: list[int]) -> list[str]:
    out, i, k = [], 0, 0
    while i < len(text):
        n = sizes[k % len(sizes)]
        out.append(text[i : i + n])
        i += n
        k += 1
    return out


def answer_part(lines: list[str]) -> list[str]:
    """Scrollback without the header and the think summary lines."""
    assert lines and lines[0] == "● test-model"
    return norm([line for line in lines[1:] if not line.startswith("▸ thought")])


# -- fixtures -------------------------------------------------------------------------------------------
UNCLOSED_FENCE = "Here is the code:\n\n```python\ndef f(x):\n\n    return x * 2\n"
FENCE_IN_LIST = (
    "Steps:\n\n1. Install it:\n\n   ```bash\n   pip install thing\n\n   thing --init\n   ```\n\n"
    "2. Run it.\n   More about running.\n\n- a bullet\n\n  continued after a blank line\n\nDone.\n"
)
TABLE = "A table:\n\n| Name | Size |\n|------|-----:|\n| a    | 1    |\n| bb   | 22   |\n\nAfter the table.\n"
MIXED = (
    "# Title\n\nSome *intro* with `code` and <answer>42</answer> tags.\n\n- one\n- two\n  - nested\n\n"
    "> a quote\n> more\n\n---\nAfter a rule.\n\n```js\nconsole.log(1)\n\n\nconsole.log(2)\n```\n"
    "    indented code\n\n    more indented\n\nSetext\n======\n\n~~~\ntilde fence\n~~~\nTrailing para.\n"
)
THINK = (
    "<think>\nLet me think about *this* carefully.\n\nStep 2 of thinking.\n</think>\n\n"
    "The answer is **42**.\n"
)
FIXTURES = {
    "unclosed_fence": UNCLOSED_FENCE,
    "fence_in_list": FENCE_IN_LIST,
    "table": TABLE,
    "mixed": MIXED,
}


# -- streaming markdown -----------------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(FIXTURES))
def test_streamed_equals_one_shot(name):
    md = FIXTURES[name]
    out, _ = stream(chop(md, [1, 2, 3]))
    assert answer_part(visible(out)) == one_shot(md)


WITH_THINKING = {
    "think+fence_in_list": (
        "<think>\nplan: a list\n\nwith code\n</think>\n\n" + FENCE_IN_LIST,
        FENCE_IN_LIST,
    ),
    "close_only+mixed": ("thought without an opening tag\n</think>\n" + MIXED, MIXED),
}


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    name=st.sampled_from(sorted(FIXTURES) + sorted(WITH_THINKING)),
    sizes=st.lists(st.integers(1, 9), min_size=1, max_size=30),
    interval=st.sampled_from([0.0, 0.025, 1.0]),
)
def test_any_chunking_gives_the_one_shot_render(name, sizes, interval):
    """Whatever the chunk boundaries and redraw timing, scrollback ends up as the whole answer (less its
    thinking) rendered at once."""
    md, answer = WITH_THINKING.get(name, (FIXTURES.get(name), FIXTURES.get(name)))
    out, _ = stream(chop(md, sizes), interval=interval)
    assert answer_part(visible(out)) == one_shot(answer)


@settings(max_examples=40, deadline=None)
@given(sizes=st.lists(st.integers(1, 7), min_size=1, max_size=20))
def test_split_points_never_break_a_block(sizes):
    """Every cut into scrollback falls between two top-level blocks of the whole text, never inside one
    (a fence with blank lines, a list item continued after a blank line, a table...)."""
    md = FENCE_IN_LIST + MIXED + TABLE
    parser = MarkdownIt("commonmark", {"html": False}).enable("table")
    offsets = [0]
    for line in md.split("\n"):
        offsets.append(offsets[-1] + len(line) + 1)
    spans = [
        (offsets[t.map[0]], offsets[t.map[1]])
        for t in parser.parse(md)
        if t.level == 0 and t.nesting >= 0 and t.map
    ]
    s = BlockStream()
    pos = 0
    for chunk in chop(md, sizes):
        s.append(chunk)
        done = s.take()
        if done:
            pos += len(done)
            inside = [(a, b) for a, b in spans if a < pos < b]
            assert not inside, f"cut inside a block at {md[pos - 20 : pos]!r}|{md[pos : pos + 20]!r}"
    assert pos + len(s.flush()) == len(md)


def test_long_fence_is_not_reparsed_per_line():
    s = BlockStream()
    s.append("Intro.\n\n```python\n")
    s.take()
    for i in range(300):
        s.append(f"x = {i}\n")
        if i % 7 == 0:
            s.append("\n")
        assert s.take() == ""
    before = s.parses
    s.append("```\nafter\n")
    assert s.take().endswith("```\n") and s.parses == before + 1


def test_unknown_html_tags_stay_visible():
    out, _ = stream(["Say <answer>42</answer> and <b>bold</b>.\n\n<answer>\nx\n</answer>\n"])
    text = "\n".join(visible(out))
    assert "<answer>42</answer>" in text and "<b>bold</b>" in text and text.count("<answer>") == 2


def test_fence_is_highlighted_with_its_language():
    out, _ = stream(chop("```python\ndef f():\n    return 1\n```\n", [2]))
    assert "\x1b[38;2;" in out  # truecolor syntax colours
    assert "def f():" in "\n".join(visible(out))


def test_live_region_never_taller_than_the_terminal():
    height = 12
    console = terminal(height=height)
    r = Renderer(console, refresh_interval=0.0, clock=Clock())
    view = r.answer("test-model")
    body = "".join(f"line {i}\n" for i in range(200))
    for chunk in chop("```text\n" + body, [5]):
        view.feed(chunk)
        assert len(view._region.lines) <= height - 2
    view.end("length")
    lines = visible(console.file.getvalue())
    text = "\n".join(lines)
    assert "line 0" in text and "line 199" in text and "..." not in text  # all of the block, in scrollback


def test_narrow_terminal_and_resize_do_not_garble():
    console = terminal(width=20)
    r = Renderer(console, refresh_interval=0.0, clock=Clock())
    view = r.answer("m")
    for i, chunk in enumerate(chop(MIXED + FENCE_IN_LIST, [3])):
        if i == 60:
            console.width = 45
        if i == 120:
            console.width = 12
        view.feed(chunk)
    view.end("stop")
    text = " ".join(visible(console.file.getvalue()))
    for word in ("Title", "quote", "tilde", "Install", "Done."):
        assert word in text


def test_single_newlines_stay_line_breaks():
    """Poems, logs and addresses keep their lines (a soft break is shown as a line break, as chat UIs do)."""
    md = "Repeat these two lines exactly:\n\nalpha line\nbeta line\n"
    assert ["alpha line", "beta line"] == [x for x in one_shot(md) if "line" in x and "Repeat" not in x]
    out, _ = stream(chop(md, [3]))
    assert answer_part(visible(out)) == one_shot(md)


def test_live_code_is_only_as_wide_as_its_code():
    """A live row that does not reach the terminal's edge does not re-wrap when the window narrows."""
    console = terminal(width=100)
    r = Renderer(console, refresh_interval=0.0, clock=Clock())
    view = r.answer("m")
    widths = []
    for chunk in chop("Code:\n\n```python\nx = 1\nlonger_name = 2\ny = 3\n", [4]):
        view.feed(chunk)
        widths += [len(_SGR.sub("", line)) for line in view._region.lines]
    view.end("length")
    assert widths and max(widths) == len(" longer_name = 2 ")  # one cell of padding either side


def test_live_region_after_a_resize_leaves_nothing_stale():
    """The window narrows, so that the region's lines re-wrap into twice the rows, and gets shorter than the
    region: a reflowing terminal (tests/support/defects_harness.py) then shows the scrollback alone."""
    pytest.importorskip("pyte")
    from tests.support.defects_harness import screen_lines

    console = terminal(width=60, height=20)
    console.print("scrollback line")
    region = LiveRegion(console)
    region.update([f"live {i} " + "x" * 45 for i in range(7)], 60, 20)
    region.update([f"live {i} " + "y" * 45 for i in range(8)], 60, 20)  # all changed, one more
    before = console.file.getvalue()
    console.width, console.height = 30, 12
    region.update([f"new {i}" for i in range(10)], 60, 20)  # rendered for the old size: not drawn
    region.update([f"new {i}" for i in range(10)], 30, 12)
    region.clear()
    console.print("after")

    def tty(text: str) -> bytes:
        return text.replace("\n", "\r\n").encode()  # what the tty's ONLCR does

    data = console.file.getvalue()
    assert screen_lines(tty(data), 60, 20, [(len(tty(before)), 30, 12)]) == ["scrollback line", "after"]


class FakeTty(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("how", ["--no-color", "NO_COLOR"])
def test_colourless_terminal_keeps_the_layout(monkeypatch, how):
    """NO_COLOR and --no-color in a terminal: markdown structure and the live region, no colour codes."""
    if how == "NO_COLOR":
        monkeypatch.setenv("NO_COLOR", "1")
    console = make_console(FakeTty(), plain=True if how == "--no-color" else None, width=80, height=25)
    r = Renderer(console, refresh_interval=0.0, clock=Clock())
    assert not r.plain and console.is_terminal
    view = r.answer("m")
    for chunk in chop("Here is code:\n\n```python\nprint('hi')\n```\n\nDone.", [3]):
        view.feed(chunk)
        assert view._region is not None
    view.end("stop")
    out = console.file.getvalue()
    assert "```" not in out and "print('hi')" in "\n".join(visible(out))
    assert not re.search(r"\x1b\[(?:[0-9;]*;)?(?:3[0-7]|38|4[0-7]|48)[;m]", out), out


def test_empty_answer():
    out, view = stream([])
    assert visible(out) == ["● test-model", "(empty answer)"]
    assert view.text == ""
    plain_buf = io.StringIO()
    r = Renderer(make_console(plain_buf, plain=True))
    r.answer("m").end("stop")
    assert plain_buf.getvalue() == ""


def test_interrupted_end_leaves_no_live_region():
    console = terminal()
    r = Renderer(console, refresh_interval=0.0, clock=Clock())
    view = r.answer("test-model")
    for chunk in chop("Para one.\n\n```python\nimport os\nprint(1)\n", [2]):
        view.feed(chunk)
    assert view._region.lines  # something is live
    view.end("interrupted")
    out = console.file.getvalue()
    assert out.rfind("\x1b[?25l") < out.rfind("\x1b[?25h")
    assert view._region.lines == []
    lines = visible(out)
    assert lines[-1].startswith("interrupted")
    assert norm(lines[1:-1]) == one_shot("Para one.\n\n```python\nimport os\nprint(1)\n")


def test_keyboard_interrupt_during_a_redraw_then_end():
    console = terminal()
    r = Renderer(console, refresh_interval=0.0, clock=Clock())
    view = r.answer("test-model")
    for chunk in chop("Some text that is long enough.\n\n- item\n", [3]):
        view.feed(chunk)
    real_write = console.file.write
    calls = {"n": 0}

    def flaky(data: str) -> int:
        calls["n"] += 1
        if calls["n"] == 1:
            real_write(data[: len(data) // 2])
            raise KeyboardInterrupt
        return real_write(data)

    console.file.write = flaky  # type: ignore[method-assign]
    with pytest.raises(KeyboardInterrupt):
        view.feed(" more")
    console.file.write = real_write  # type: ignore[method-assign]
    view.end("interrupted")
    out = console.file.getvalue()
    assert out.rfind("\x1b[?25l") < out.rfind("\x1b[?25h")
    assert "interrupted" in visible(out)[-1]


def test_view_as_context_manager_ends_on_ctrl_c():
    console = terminal()
    r = Renderer(console, refresh_interval=0.0, clock=Clock())
    with pytest.raises(KeyboardInterrupt), r.answer("m") as view:
        view.feed("partial")
        raise KeyboardInterrupt
    assert view._ended and "interrupted" in visible(console.file.getvalue())[-1]


# -- think blocks -----------------------------------------------------------------------------------------
@settings(max_examples=30, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 3), min_size=1, max_size=15),
    mode=st.sampled_from(["fold", "show", "hide"]),
)
def test_think_block_in_tiny_chunks(sizes, mode):
    out, view = stream(chop(THINK, sizes), think=mode)
    lines = visible(out)
    text = "\n".join(lines)
    assert answer_part([line for line in lines if "Step 2" not in line and "Let me" not in line]) == one_shot(
        "The answer is **42**.\n"
    )
    assert "<think>" not in text and "</think>" not in text
    if mode == "show":
        assert "Let me think about *this* carefully." in text and "Step 2 of thinking." in text
        assert re.search(r"▸ thought for \d+ tokens, [\d.]+ s", text)
    elif mode == "fold":
        assert "Let me think" not in text
        assert re.search(r"▸ thought for \d+ tokens, [\d.]+ s", text)
    else:
        assert "Let me think" not in text and "thought for" not in text
    assert view.text == THINK


def test_think_summary_counts_chunks_and_seconds():
    """Tokens are the chunks that carried thinking; seconds run from the opening tag to the closing one."""
    console = terminal()
    now = [0.0]
    r = Renderer(console, refresh_interval=0.0, clock=lambda: now[0])
    view = r.answer("test-model")
    for chunk in ["<think>", "a", " b", " c", "</think>", "Answer."]:
        now[0] += 0.5
        view.feed(chunk)
    view.end("stop")
    assert "▸ thought for 3 tokens, 2.0 s" in visible(console.file.getvalue())


def test_close_without_open_folds_what_came_before():
    md = "I should say hi.\nYes.\n</think>\n\n  Hello **there**.\n"
    for sizes in ([1], [2, 5], [len(md)]):
        out, _ = stream(chop(md, sizes))
        lines = visible(out)
        assert "I should say hi" not in "\n".join(lines)
        assert any(line.startswith("▸ thought for") for line in lines)
        assert answer_part(lines) == one_shot("Hello **there**.\n")


def test_think_open_from_the_prompt():
    assert prompt_opens_think("<|im_start|>assistant\n<think>\n")
    assert not prompt_opens_think("<|im_start|>assistant\n<think>\n\n</think>\n\n")
    out, _ = stream(chop("thinking...\n</think>\nHi.", [3]), think_open=True)
    assert "thinking" not in "\n".join(visible(out)) and "Hi." in visible(out)


def test_unclosed_think_block_is_folded_with_a_note():
    out, _ = stream(chop("<think>\nstill pondering this", [4]), reason="length")
    lines = visible(out)
    note = re.compile(r"▸ thought for \d+ tokens, [\d.]+ s \(stopped at max_new_tokens\)")
    assert any(note.match(line) for line in lines)
    assert "pondering" not in "\n".join(lines)
    assert any(line.startswith("stopped at max_new_tokens (:continue goes on") for line in lines[-2:])


def test_late_close_tag_after_the_hold_is_reported():
    thought = "word " * 600  # past the undecided hold
    out, _ = stream(chop(thought + "</think>\n\nThe answer.", [7]))
    lines = visible(out)
    assert any("no <think> tag" in line for line in lines)
    assert lines[-1] == "The answer."


@pytest.mark.parametrize("cut", range(1, len("<think>")))
def test_splitter_handles_tags_split_anywhere(cut):
    text = "<think>abc</think>\n\nanswer </think> text"
    for think_open in (None, False):
        sp = ThinkSplitter(think_open, hold_chars=50)
        events = []
        for piece in chop(text, [cut]):
            events += sp.feed(piece)
        events += sp.finish()
        think = "".join(e.text for e in events if e.kind == "think")
        answer = "".join(e.text for e in events if e.kind == "answer")
        assert think == "abc" and answer == "answer </think> text"
        assert [e.kind for e in events if e.kind in ("open", "close")] == ["open", "close"]


def test_splitter_partial_tag_at_the_end_is_text():
    sp = ThinkSplitter(False)
    events = sp.feed("done </thi") + sp.finish()
    assert "".join(e.text for e in events if e.kind == "answer") == "done </thi"


# -- plain and raw modes ---------------------------------------------------------------------------------
def plain() -> tuple[Renderer, io.StringIO]:
    buf = io.StringIO()
    return Renderer(make_console(buf, plain=True)), buf


@pytest.mark.parametrize("mode", ["show", "fold", "hide"])
def test_plain_mode_has_no_escape_codes(mode):
    r, buf = plain()
    r.think = mode
    r.banner(model="m", device="cpu", dtype="bf16", extra=["extra line"])
    r.table([("a", "b")], headers=("x", "y"), title="T")
    r.notice("note")
    r.error("bad")
    r.hint("hint")
    r.info("[bold]not markup[/bold]")
    r.stats(TurnStats(prompt_tokens=3, generated_tokens=2))
    r.history([SimpleNamespace(role="user", content="q", interrupted=False)], "sys")
    for md in [*FIXTURES.values(), THINK, "no open</think>answer"]:
        view = r.answer("m")
        for chunk in chop(md, [2, 3]):
            view.feed(chunk)
        view.end("interrupted")
    assert "\x1b" not in buf.getvalue()
    assert "[bold]not markup[/bold]" in buf.getvalue()


def test_plain_mode_streams_raw_text_as_it_arrives():
    r, buf = plain()
    view = r.answer("m")
    view.feed("# Hi")
    assert buf.getvalue() == "# Hi"  # written through, not held for a block
    view.feed(" there\n\n- x")
    view.end("stop")
    assert buf.getvalue() == "# Hi there\n\n- x\n"


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("fold", "The answer is **42**.\n"),
        ("hide", "The answer is **42**.\n"),
        (
            "show",
            "<think>\nLet me think about *this* carefully.\n\nStep 2 of thinking.\n</think>\n"
            "The answer is **42**.\n",
        ),
    ],
)
def test_plain_mode_think_blocks(mode, expected):
    r, buf = plain()
    r.think = mode
    view = r.answer("m")
    for chunk in chop(THINK, [2]):
        view.feed(chunk)
    view.end("stop")
    assert buf.getvalue() == expected


def test_plain_mode_close_only_with_think_open():
    r, buf = plain()
    view = r.answer("m", think_open=True)
    for chunk in chop("pondering\n</think>\n\nAnswer.", [3]):
        view.feed(chunk)
    view.end("stop")
    assert buf.getvalue() == "Answer.\n"


def test_markdown_off_streams_raw_text_on_a_terminal():
    out, _ = stream(chop(MIXED, [4]), markdown=False)
    assert "\x1b[J" not in out and "\x1b[1A" not in out and "\x1b[?25l" not in out
    assert _SGR.sub("", out).split("\n", 1)[1] == MIXED


def test_markdown_off_folds_thinking_to_one_line():
    out, _ = stream(chop(THINK, [3]), markdown=False)
    lines = visible(out)
    assert lines[0] == "● test-model" and re.match(r"▸ thought for \d+ tokens", lines[1])
    assert lines[2:] == ["The answer is **42**."]


# -- the look ---------------------------------------------------------------------------------------------
def test_styles_of_one_liners():
    console = terminal()
    r = Renderer(console)
    r.error("boom")
    r.notice("careful")
    r.hint("psst")
    out = console.file.getvalue()
    assert "\x1b[1;31merror: boom" in out and "\x1b[33mcareful" in out and "\x1b[2mpsst" in out


def test_answer_header_names_the_model():
    out, _ = stream(["Hi."])
    assert "\x1b[1;36m● test-model" in out


def test_export_svg(tmp_path):
    console = terminal(width=100, height=40, record=True)
    r = Renderer(console, refresh_interval=0.0, clock=Clock())
    r.banner(model="m", device="cpu", dtype="bf16")
    view = r.answer("m")
    for chunk in chop(THINK + MIXED, [5]):
        view.feed(chunk)
    view.end("stop")
    path = tmp_path / "shot.svg"
    r.export_svg(path)
    svg = path.read_text()
    assert svg.startswith("<svg") and "Title" in svg
    assert svg.count("Trailing") == 1  # scrollback only, not the live region's redraws
    with pytest.raises(RuntimeError):
        Renderer(terminal()).export_svg(tmp_path / "x.svg")


def test_answer_markdown_sets_what_rich_markdown_sets():
    assert set(vars(AnswerMarkdown("x"))) >= set(vars(Markdown("x")))


def test_list_preview_split_keeps_nested_code_under_its_bullet():
    src = "1. one\n2. two:\n\n   ```go\n   x := 1\n   y := 2\n"
    cut = split_preview(src)
    assert cut.done.startswith("1. one\n2. two:") and cut.code == "x := 1\ny := 2\n" and cut.lexer == "go"
    assert cut.indent == 3
    nested = "- a\n  - b\n\n    ```\n    z\n"
    assert split_preview(nested).indent == 6


# -- control characters from a model, a server or a file are shown, not obeyed ----------------------------
PAYLOADS = {  # raw -> what the screen shows instead (qwenchat.text.visible)
    "\x1b]0;TITLE\x07": "␛]0;TITLE␇",
    "\x1b]52;c;QQ==\x07": "␛]52;c;QQ==␇",
    "\x1b[2JWIPED": "␛[2JWIPED",
    "\x9b31;7HMOVED": "␛[31;7HMOVED",
    "safe\rrm -rf ~": "safe␍rm -rf ~",
    "A\ud800B": "A\ufffdB",
}
UNTRUSTED = " ".join(PAYLOADS)
SHOWN = " ".join(PAYLOADS.values())
# The sequences qwenchat writes itself while rendering: colours, cursor moves, erasures, cursor show/hide.
_OURS = re.compile(r"\x1b\[[0-9;]*[mABJKG]|\x1b\[\?25[lh]")  # SGR, cursor up/down, erase


def no_foreign_controls(out: str) -> None:
    rest = _OURS.sub("", out).replace("\r\n", "\n").replace("\r", "")  # CR: the live region's own redraws
    assert not re.search("[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff]", rest), repr(rest[:400])


@pytest.mark.parametrize("kind", ["terminal", "plain"])
def test_one_liners_show_control_characters(kind):
    console = terminal() if kind == "terminal" else make_console(io.StringIO(), plain=True)
    r = Renderer(console)
    r.banner(model="m " + UNTRUSTED, device="cpu", dtype="bf16", extra=[UNTRUSTED])
    for say in (r.info, r.notice, r.error, r.hint, r.text):
        say(UNTRUSTED)
    r.table([("a", UNTRUSTED)], headers=("x", "y"), title=UNTRUSTED)
    r.history([SimpleNamespace(role="assistant", content=UNTRUSTED, interrupted=False)], UNTRUSTED)
    with r.status(UNTRUSTED) as update:
        update(UNTRUSTED)
    out = console.file.getvalue()
    no_foreign_controls(out)
    assert out.count(SHOWN) >= 10  # banner, extra, five one-liners, a table cell, history (system, answer)


@pytest.mark.parametrize("markdown", [True, False])
@pytest.mark.parametrize("kind", ["terminal", "plain"])
@given(sizes=st.lists(st.integers(1, 7), min_size=1, max_size=5))
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_streamed_answer_shows_control_characters_however_cut(kind, markdown, sizes):
    """An escape sequence split across tokens, in a paragraph, inline code and a fence, is still shown."""
    md = f"{UNTRUSTED}\n\nx `{UNTRUSTED}` y\n\n```\n{UNTRUSTED}\n```\n\n```text\n{UNTRUSTED}\n```\n"
    console = terminal() if kind == "terminal" else make_console(io.StringIO(), plain=True)
    out, _ = stream(chop(md, sizes), console=console, markdown=markdown, interval=0.0)
    no_foreign_controls(out)
    if kind == "plain":
        assert out == md.replace(UNTRUSTED, SHOWN)  # pipes get the text, visibly
    else:
        shown = "\n".join(visible(out))
        assert shown.count("␛]52;c;QQ==␇") == 4 and shown.count("safe␍rm -rf ~") == 4


@pytest.mark.parametrize("think", ["show", "fold", "hide"])
def test_think_model_name_and_error_show_control_characters(think):
    console = terminal()
    r = Renderer(console, think=think, refresh_interval=0.0, clock=Clock())
    view = r.answer("model\x1b]0;T\x07")
    for chunk in chop(f"<think>{UNTRUSTED}\n</think>\n\n{UNTRUSTED}", [3]):
        view.feed(chunk)
    view.end("error", error="the server answered 500: \x1b]0;ERR\x07")
    out = console.file.getvalue()
    no_foreign_controls(out)
    assert "● model␛]0;T␇" in out and "error: the server answered 500: ␛]0;ERR␇" in out


@pytest.mark.parametrize("markdown", [True, False])
def test_a_crlf_answer_is_lines_not_carriage_returns(markdown):
    out, _ = stream(["one\r", "\n\r\ntwo\r\nthree"], markdown=markdown)
    # A single newline stays a line break in markdown too (soft breaks are rendered as hard ones).
    assert answer_part(visible(out)) == ["one", "", "two", "three"]


def test_links_show_their_real_target_not_a_hidden_hyperlink():
    md = "See [https://safe.example/](http://evil.example/x) and <https://same.example/p>.\n"
    out, _ = stream([md])
    assert "\x1b]8;" not in out
    assert answer_part(visible(out)) == [
        "See https://safe.example/ (http://evil.example/x) and https://same.example/p."
    ]


def test_stats_leave_out_a_decode_rate_without_two_tokens(out):
    """An answer that failed before its second token has no decode speed ("decode 0.0 tok/s" said nothing)."""
    out.stats(TurnStats(prompt_tokens=154, reused_tokens=153, generated_tokens=0, finish_reason="error"))
    out.stats(TurnStats(prompt_tokens=10, generated_tokens=5, decode_tps=8.0, finish_reason="stop"))
    first, second = out.buf.getvalue().splitlines()
    assert "decode" not in first and first.endswith("0 tok · error")
    assert "decode 8.0 tok/s" in second


def test_stats_name_the_servers_system_fingerprint_when_it_sent_one(out):
    out.stats(
        TurnStats(prompt_tokens=10, generated_tokens=5, decode_tps=8.0, system_fingerprint="fp_44709d6fcb")
    )
    out.stats(TurnStats(prompt_tokens=10, generated_tokens=5, decode_tps=8.0))
    with_it, without = out.buf.getvalue().splitlines()
    assert with_it.endswith("server fingerprint fp_44709d6fcb") and "fingerprint" not in without
