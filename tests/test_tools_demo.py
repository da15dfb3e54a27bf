"""Tools and the reasoning switch on the real demo model (Qwen2.5-Coder-0.5B): its template renders the
tools, it answers a tool prompt with a call that parses, and its template has no enable_thinking switch.
How often it gets the call right over 20 sampled tries: bench/toolcall_rate.py (README)."""

from __future__ import annotations

import json

import pytest

from qwenchat.commands.reasoning import set_mode

pytestmark = pytest.mark.slow

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "description": "the city's name"}},
            "required": ["city"],
        },
    },
}


@pytest.fixture(scope="module")
def engine(demo_loaded):
    from qwenchat.engines.transformers import TransformersEngine

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


def test_demo_model_calls_the_tool_and_the_call_parses(engine):
    """Asked freely, the 0.5B coder mostly writes the call as a fenced JSON block (bench/toolcall_rate.py);
    with the answer opened by `<tool_call>` (a prefill, then :continue) it completes the call, and the
    parse of that real output is checked."""
    from qwenchat.chat import ChatSession
    from qwenchat.tools import pending_calls

    session = ChatSession(engine)
    session.toolbox.definitions = [WEATHER]
    session.settings.update({"temperature": 0, "max_new_tokens": 48})
    session.conversation.add_user("What is the weather in Paris right now?")
    session.conversation.add_assistant("<tool_call>\n")
    result = session.continue_()
    found = [(c.name, c.arguments, c.problem) for c in result.tool_calls]
    assert found and found[0] == ("get_weather", {"city": "Paris"}, None), result.text
    pending = pending_calls(session.conversation.messages)
    assert pending[0] == {"id": "call_0", "name": "get_weather", "arguments": {"city": "Paris"}}
    prompt = engine.render_prompt(session.request(extra_user="x"))
    # The call goes back into the prompt as the template writes it, once.
    assert prompt.count('{"name": "get_weather", "arguments": {"city": "Paris"}}') == 1
    for _ in pending[:-1]:
        assert session.tool_result('{"temperature_c": 21}') is None
    answer = session.tool_result('{"temperature_c": 21, "sky": "clear"}')
    assert answer is not None and answer.finish_reason in ("stop", "length") and answer.text.strip()
    roles = [m.role for m in session.conversation.messages]
    assert roles == ["user", "assistant", *["tool"] * len(pending), "assistant"]
