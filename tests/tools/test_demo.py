"""Tools and the reasoning switch on the real demo model (Qwen2.5-Coder-0.5B): its template renders the
tools, a call it completes parses, and its template has no enable_thinking switch.
How often it gets the call right over 20 sampled tries: bench/toolcall_rate.py (README)."""

from __future__ import annotations

import json
import re

import pytest

from qwenchat.commands.reasoning import set_mode
from tests.support.demo_tools import WEATHER, WEATHER_PROMPT


@pytest.fixture(scope="module")
def engine(demo_loaded):
    from qwenchat.engines.transformers.engine import TransformersEngine

    return TransformersEngine(demo_loaded.model, demo_loaded.tokenizer, demo_loaded.name)


def test_template_shows_the_tools_and_says_there_is_no_switch(engine, out, make_repl, tmp_path):
    path = tmp_path / "tools.json"
    path.write_text(json.dumps([WEATHER]))
    app = make_repl(engine, out)
    app.handle_line(f":tools {path}")
    app.handle_line(":reasoning off")
    app.handle_line(":template")
    said = out.buf.getvalue()
    assert "<tools>\n" + json.dumps(WEATHER) + "\n</tools>" in said  # written into the system turn
    assert "<tool_call>" in said and f"tools: get_weather (from {path})" in said
    assert "this model's chat template has no reasoning switch" in said
    assert "reasoning off: this chat template has no enable_thinking switch; not applied" in said
    assert set_mode(app.session, "on") is not None and app.session.request().template_kwargs == {}


def expected_validity(text: str) -> list[bool]:
    """What a parse of `text` must find, worked out here by hand: each closed block is a valid call when
    its body is a JSON object naming get_weather with object arguments; an unclosed block is unfinished."""
    out = []
    for body in re.findall(r"<tool_call>(.*?)</tool_call>", text, re.DOTALL):
        try:
            data = json.loads(body)
        except ValueError:
            out.append(False)
            continue
        out.append(data.get("name") == "get_weather" and isinstance(data.get("arguments"), dict))
    return out + [False] * (text.count("<tool_call>") - len(out))


@pytest.mark.parametrize("prefill", [None, "<tool_call>\n{"])
def test_demo_model_asked_to_call_a_tool_and_the_parse_matches_its_text(engine, prefill):
    """Asked freely, the 0.5B coder writes the call as a fenced JSON block, with no tags (greedy here; see
    bench/toolcall_rate.py for sampled tries); with the answer opened by `<tool_call>\n{` it writes a
    non-JSON call and no closing tag. Whatever it writes, the parse must match the text exactly, keep the
    text, and leave no call pending that the model did not make."""
    from qwenchat.chat.session import ChatSession
    from qwenchat.tools.calls import pending_calls

    session = ChatSession(engine)
    session.toolbox.definitions = [WEATHER]
    session.settings.update({"temperature": 0, "max_new_tokens": 48})
    question = WEATHER_PROMPT
    if prefill is None:
        result = session.send(question)
        text = result.text
    else:
        session.conversation.add_user(question)
        session.conversation.add_assistant(prefill)
        result = session.continue_()
        text = prefill + result.text
    assert "get_weather" in text and "Paris" in text  # the model understood which tool, and the argument
    assert [c.valid for c in result.tool_calls] == expected_validity(text), text
    valid = [c for c in result.tool_calls if c.valid]
    last = session.conversation.messages[-1]
    assert [c["name"] for c in pending_calls(session.conversation.messages)] == [c.name for c in valid]
    if not valid:
        assert last.content == text and last.tool_calls is None  # nothing the model wrote is lost
