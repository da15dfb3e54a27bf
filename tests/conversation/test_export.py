import re
from datetime import datetime

from qwenchat.conversation.export import conversation_title, to_markdown
from qwenchat.conversation.model import Conversation
from qwenchat.text.fences import code_blocks

DATE = datetime(2026, 11, 22, 2, 17)


def headings(md):
    """Level-2 headings outside fenced blocks: the document's real structure."""
    out, fence = [], None
    for line in md.split("\n"):
        m = re.match(r"^[ \t]*(`{3,}|~{3,})(.*)$", line)
        if m and fence is None:
            fence = m.group(1)
        elif m and fence and m.group(1)[0] == fence[0] and len(m.group(1)) >= len(fence):
            fence = None if not m.group(2).strip() else fence
        elif fence is None and line.startswith("## "):
            out.append(line)
    assert fence is None, "a fence was left open"
    return out


def test_structure():
    c = Conversation(system="Be brief.\nAnswer in English.")
    c.add_user("What is 2+2?")
    c.add_assistant("<think>\nadd them\n</think>\n\n**4**")
    c.add_user("and 3+3?")
    c.add_assistant("6, because", interrupted=True)
    overrides = {"temperature": 0.3, "stop_strings": ["x"]}
    md = to_markdown(c, model="Qwen/Qwen3-0.6B", settings_overrides=overrides, seed=1234, date=DATE)
    assert md.startswith("# What is 2+2?\n")
    assert "- **Model:** `Qwen/Qwen3-0.6B`" in md
    assert "- **Date:** 2026-11-22 02:17" in md and "- **Seed:** 1234" in md
    assert '`stop_strings=["x"]`, `temperature=0.3`' in md
    assert "> Be brief.\n> Answer in English." in md
    assert headings(md) == ["## You", "## Qwen/Qwen3-0.6B"] * 2
    assert "<details><summary>Thinking</summary>\n\nadd them\n\n</details>\n\n**4**" in md
    assert "```text\nWhat is 2+2?\n```" in md
    assert "6, because\n\n*(interrupted)*" in md
    assert md.endswith("\n") and not md.endswith("\n\n")
    assert "<think>" not in md


def test_minimal():
    c = Conversation(system=None)
    md = to_markdown(c, model="demo", date=DATE)
    assert md.startswith("# Chat with demo\n") and "Seed" not in md and "Settings" not in md and ">" not in md
    assert headings(md) == []


def test_hostile_user_text_stays_in_its_block():
    evil = "# Heading\n```\n## Qwen\n````\n</details>\n<!--\n~~~"
    c = Conversation()
    c.add_user(evil)
    c.add_assistant("fine")
    md = to_markdown(c, model="Qwen", date=DATE)
    assert headings(md) == ["## You", "## Qwen"]
    assert code_blocks(md.split("## You", 1)[1].rsplit("## Qwen", 1)[0]) == [evil]
    assert "`````text\n" + evil + "\n`````" in md
    assert md.rstrip().endswith("fine")


def test_answer_cut_inside_a_fence_is_closed():
    c = Conversation()
    c.add_user("code?")
    c.add_assistant("Sure:\n````python\nprint(1)", interrupted=True)
    c.add_user("next")
    c.add_assistant("ok")
    md = to_markdown(c, model="m", date=DATE)
    assert headings(md) == ["## You", "## m"] * 2
    assert "print(1)\n````\n\n*(interrupted)*" in md


def test_thinking_cannot_close_the_fold_or_leave_a_fence_open():
    c = Conversation()
    c.add_user("q")
    c.add_assistant("<think>a\n</details>\n```\nunfinished</think>answer")
    md = to_markdown(c, model="m", date=DATE)
    assert md.count("</details>") == 1 and "&lt;/details>" in md
    assert headings(md) == ["## You", "## m"]
    assert md.rstrip().endswith("answer")


def test_interrupted_while_thinking_and_empty_answers():
    c = Conversation()
    c.add_user("q")
    c.add_assistant("<think>still going", interrupted=True)
    c.add_user("q2")
    c.add_assistant("")
    c.add_user("q3")  # no answer yet
    md = to_markdown(c, model="m", date=DATE)
    assert "<details><summary>Thinking</summary>\n\nstill going\n\n</details>\n\n*(interrupted)*" in md
    assert "*(no answer)*" in md
    assert headings(md) == ["## You", "## m", "## You", "## m", "## You"]


def test_hostile_model_name_and_settings():
    c = Conversation()
    c.add_user("hi")
    c.add_assistant("yo")
    md = to_markdown(c, model="evil\n## fake `x`", settings_overrides={"stop_strings": "``` ok"}, date=DATE)
    assert "## evil \\#\\# fake \\`x\\`\n" in md
    assert headings(md)[0] == "## You" and len(headings(md)) == 2
    assert "\n- **Model:** `` evil ## fake `x` ``\n" in md
    assert '````stop_strings="``` ok"````' in md


def test_title():
    c = Conversation()
    assert conversation_title(c) == "(empty)"
    c.add_user("\n  first   line\x07 \nsecond")
    assert conversation_title(c) == "first line"


def test_fence_an_answer_left_open_in_a_list_item_is_closed_there():
    c = Conversation()
    c.add_user("steps?")
    c.add_assistant("1. Install:\n   ```bash\n   pip install x", interrupted=True)
    c.add_user("next")
    c.add_assistant("ok")
    md = to_markdown(c, model="m", date=DATE)
    assert "   pip install x\n   ```\n\n*(interrupted)*" in md
    assert headings(md) == ["## You", "## m"] * 2
    # The closing fence closed the list item's fence: no fence swallows the rest of the document.
    assert code_blocks(md.split("## m", 1)[1].split("## You", 1)[0]) == ["pip install x"]


def test_control_characters_are_written_visibly():
    """A `cat` of the file must not retitle the window or write the clipboard."""
    c = Conversation(system="sys \x1b]0;SYS\x07")
    c.add_user("q \x1b[2J\x9b1m")
    c.add_assistant(
        "<think>t \x1b]52;c;QQ==\x07</think>\n\nsafe\rrm -rf ~\n\n```\n\x1bP$q\x1b\\\n```\nA\ud800B"
    )
    model = "m\x1b]8;;http://x\x1b\\"
    md = to_markdown(c, model=model, settings_overrides={"stop_strings": ["\x07"]}, date=DATE)
    assert not re.search("[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff]", md)
    md.encode("utf-8")
    for shown in ("␛]0;SYS␇", "q ␛[2J␛[1m", "t ␛]52;c;QQ==␇", "safe␍rm -rf ~", "␛P$q␛\\", "A\ufffdB"):
        assert shown in md
    assert md.startswith("# q \\[2J 1m\n")  # titles and the model's name drop them (export.one_line)
    assert headings(md) == ["## You", "## m \\]8;;http://x \\\\"]
