"""The tool bench without a model: definitions, the streaming call parser, server deltas, the session's tool
messages (format 2, v1 still loading), the commands through the REPL with the fake engine, and the
OpenAI-compatible engine against a scripted server that streams tool_calls deltas."""

from __future__ import annotations

import json
import threading

import pytest

from qwenchat.conversation.export import to_markdown
from qwenchat.conversation.file import conversation_from_dict, conversation_to_dict
from qwenchat.conversation.model import Conversation, ConversationFormatError, Message
from qwenchat.conversation.store import load_file, save_file
from qwenchat.engines.api import GenerationRequest
from qwenchat.engines.openai.engine import OpenAIEngine
from qwenchat.tools.calls import (
    CallParser,
    DeltaAssembler,
    ToolsError,
    check_definitions,
    load_definitions,
    split_calls,
)
from tests.support.fakes import FakeEngine
from tests.support.scripted_server import Scripted, delta, sse, streams

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city now",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
TOOL_MSG = {"role": "tool", "name": "get_weather"}
CALL = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'


@pytest.fixture
def tools_file(tmp_path):
    path = tmp_path / "tools.json"
    path.write_text(json.dumps([WEATHER]))
    return path


# -- definitions ---------------------------------------------------------------------------------
def test_definitions_are_normalised_and_every_problem_is_one_line(tmp_path):
    bare = {"name": "add", "parameters": {"type": "object", "properties": {}}}
    tools, errors = check_definitions([WEATHER, bare])
    assert errors == [] and [t["function"]["name"] for t in tools] == ["get_weather", "add"]
    assert tools[1] == {"type": "function", "function": bare}
    bad = [
        WEATHER,
        WEATHER,
        {"type": "function", "function": {"description": "no name"}},
        {"name": "x", "parameters": {"type": "array"}},
        {"name": "y", "parameters": {"type": "object", "required": "city"}},
        7,
    ]
    _, errors = check_definitions(bad)
    assert errors == [
        "tool 2 (get_weather): defined twice",
        "tool 3: no 'name' (a non-empty string)",
        "tool 4 (x): 'parameters' must have type 'object'",
        "tool 5 (y): 'parameters.required' must be a list of names",
        "tool 6: not an object",
    ]
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(bad))
    with pytest.raises(ToolsError) as exc:
        load_definitions(path)
    assert len(str(exc.value).splitlines()) == 5
    path.write_text("{not json")
    with pytest.raises(ToolsError, match="is not JSON"):
        load_definitions(path)
    with pytest.raises(ToolsError, match="cannot read"):
        load_definitions(tmp_path / "missing.json")


# -- parsing -------------------------------------------------------------------------------------
def test_parser_finds_calls_however_the_stream_is_cut():
    text = (
        "Let me check.\n"
        + CALL
        + "\n<tool_call>\n{bad json}\n</tool_call>\n"
        + CALL.replace("get_weather", "launch")
    )
    for step in (1, 2, 3, 7, len(text)):
        parser = CallParser(["get_weather"])
        found = []
        for i in range(0, len(text), step):
            found += parser.feed(text[i : i + step])
        assert [(c.name, c.arguments, c.valid) for c in found] == [
            ("get_weather", {"city": "Paris"}, True),
            (None, None, False),
            ("launch", {"city": "Paris"}, False),
        ]
        assert found[1].problem.startswith("invalid JSON") and "unknown tool 'launch'" in found[2].problem
    parser = CallParser(["get_weather"])
    assert parser.feed('<tool_call>\n{"name": "get_we') == [] and parser.finish()[0].problem == (
        "unfinished tool call"
    )


def test_split_keeps_invalid_blocks_in_the_text():
    text = "Checking.\n" + CALL + "\n<tool_call>\n{oops}\n</tool_call>"
    rest, calls = split_calls(text, ["get_weather"])
    assert rest == "Checking.\n\n<tool_call>\n{oops}\n</tool_call>"
    assert [c.valid for c in calls] == [True, False]
    assert split_calls("no calls here", ["get_weather"]) == ("no calls here", [])


def test_server_deltas_assemble_into_the_same_blocks():
    asm = DeltaAssembler()
    asm.add(0, "get_", '{"ci')
    asm.add(1, "get_weather", '{"city": "Rome"}')
    asm.add(0, "weather", 'ty": "Paris"}')
    rest, calls = split_calls(asm.flush(), ["get_weather"])
    assert rest == "" and [c.arguments for c in calls] == [{"city": "Paris"}, {"city": "Rome"}]
    assert asm.flush() == ""


# -- the session: messages, save/load, export ----------------------------------------------------
def tool_conversation() -> Conversation:
    call = {"id": "call_0", "name": "get_weather", "arguments": {"city": "Paris"}}
    return Conversation(
        messages=[
            Message("user", "Weather in Paris?"),
            Message("assistant", "", tool_calls=[call]),
            Message("tool", '{"temp": 21}', tool_call_id="call_0", name="get_weather"),
            Message("assistant", "It is 21 degrees."),
        ]
    )


def test_format_2_round_trip_and_v1_still_loads(tmp_path):
    conv = tool_conversation()
    data = conversation_to_dict(conv)
    assert data["version"] == 2
    assert data["messages"][1]["tool_calls"][0]["arguments"] == {"city": "Paris"}
    assert conversation_from_dict(json.loads(json.dumps(data))) == conv
    saved = save_file(tmp_path / "s.json", conversation=conv, model="m", settings_overrides={}, seed=1)
    assert load_file(saved.path).conversation == conv
    v1 = {"version": 1, "system": "s", "messages": [{"role": "user", "content": "hi"}]}
    assert conversation_from_dict(v1).messages == [Message("user", "hi")]
    chat = conv.to_chat()
    assert chat[2]["tool_calls"][0]["function"] == {"name": "get_weather", "arguments": {"city": "Paris"}}
    assert chat[3] == {
        "role": "tool",
        "content": '{"temp": 21}',
        "tool_call_id": "call_0",
        "name": "get_weather",
    }


@pytest.mark.parametrize(
    "message, error",
    [
        ({"role": "user", "content": "x", "tool_calls": []}, "only an assistant message has 'tool_calls'"),
        ({"role": "assistant", "content": "", "tool_calls": {}}, "'tool_calls' must be a list"),
        ({"role": "assistant", "content": "", "tool_calls": [{"id": "a"}]}, "needs a string 'name'"),
        (
            {"role": "assistant", "content": "", "tool_calls": [{"name": "f", "arguments": "[]"}]},
            "'arguments' must be an object",
        ),
        ({"role": "tool", "content": "1", "name": 3}, "'name' must be a string"),
        ({"role": "user", "content": "x", "tool_call_id": "a"}, "only a tool message has 'tool_call_id'"),
    ],
)
def test_hostile_tool_fields_are_one_line_errors(message, error):
    with pytest.raises(ConversationFormatError, match=error):
        conversation_from_dict({"version": 2, "system": None, "messages": [message]})


def test_export_shows_calls_and_results():
    md = to_markdown(tool_conversation(), model="m")
    assert "**Tool call** `get_weather`:" in md and '"city": "Paris"' in md
    assert "## Tool result: `get_weather`" in md and '{"temp": 21}' in md
    assert "*(no answer)*" not in md


# -- the commands through the REPL, fake engine ---------------------------------------------------
@pytest.fixture
def app(out, make_repl):
    return make_repl(FakeEngine(), out)


def said(app) -> str:
    return app.renderer.buf.getvalue()


def test_tools_command_load_show_off_and_errors(app, tools_file, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"name": ""}, {"name": "f", "parameters": []}]))
    app.handle_line(f":tools {bad}")
    out = said(app)
    assert "tool 1: no 'name'" in out and "tool 2 (f): 'parameters' must be a JSON schema object" in out
    assert "tools not loaded (nothing changed)" in out and app.session.toolbox.definitions is None
    app.handle_line(f":tools {tools_file}")
    assert "1 tool(s)" in said(app) and app.session.request().tools == [WEATHER]
    app.handle_line(":tools show")
    assert '"name": "get_weather"' in said(app)
    app.handle_line(":template")
    assert "tools: get_weather" in said(app)
    app.handle_line(":tools off")
    assert app.session.request().tools is None


def test_call_panel_results_in_order_and_the_model_goes_on(app, tools_file, tmp_path):
    engine = app.session.engine
    two = CALL + "\n" + CALL.replace("Paris", "Rome")
    engine.enqueue(["Sure. " + two, "Paris 21, Rome 25."])
    app.handle_line(f":tools {tools_file}")
    app.handle_line("Weather in Paris and Rome?")
    out = said(app)
    assert out.count("tool call: get_weather") == 2 and '"city": "Rome"' in out
    assert ":tool-result JSON (or @file) answers the 2 call(s) in order" in out
    msgs = app.session.conversation.messages
    assert msgs[-1].content == "Sure." and [c["id"] for c in msgs[-1].tool_calls] == ["call_0", "call_1"]
    app.handle_line(":tool-result {bad")
    assert "the result is not JSON" in said(app) and len(engine.requests) == 1
    app.handle_line(':tool-result {"temp": 21}')
    assert "next: get_weather (1 left)" in said(app) and len(engine.requests) == 1
    result = tmp_path / "rome.json"
    result.write_text('{"temp": 25}')
    app.handle_line(f":tool-result @{result}")
    assert len(engine.requests) == 2
    sent = engine.requests[1].messages
    assert [m["role"] for m in sent[-3:]] == ["assistant", "tool", "tool"]
    assert sent[-1] == {
        "role": "tool",
        "content": '{"temp": 25}',
        "tool_call_id": "call_1",
        "name": "get_weather",
    }
    assert msgs[-1].content == "Paris 21, Rome 25."
    app.handle_line(':tool-result {"x": 1}')
    assert "no tool call is waiting for a result" in said(app)
    app.handle_line(":his")
    assert "tool result" in said(app)
    app.handle_line(":undo")  # the whole exchange: question, calls, results, answer
    assert app.session.conversation.messages == []


def test_mocks_answer_by_name_and_unknown_tools_are_flagged(out, make_repl, tools_file, tmp_path):
    mocks = tmp_path / "mocks.json"
    mocks.write_text(json.dumps({"get_weather": {"temp": 21}}))
    engine = FakeEngine().enqueue([CALL, "It is 21.", CALL.replace("get_weather", "launch"), "x"])
    app = make_repl(engine, out)
    app.session.toolbox.load(str(tools_file))
    app.session.toolbox.load_mocks(str(mocks))
    app.handle_line("Weather?")
    assert len(engine.requests) == 2 and engine.requests[1].messages[-1]["content"] == '{"temp": 21}'
    assert f"tool get_weather answered from {mocks}" in said(app)
    assert app.session.conversation.messages[-1].content == "It is 21."
    app.handle_line("Launch?")
    assert "unknown tool 'launch'" in said(app) and len(engine.requests) == 3  # not mocked: waits


# -- the endpoint: tool_calls deltas from a scripted server ----------------------------------------
def tool_delta(index, id=None, name=None, arguments=None, finish=None):
    fn = {k: v for k, v in (("name", name), ("arguments", arguments)) if v is not None}
    call = {"index": index, "function": fn, **({"id": id, "type": "function"} if id else {})}
    return delta(None, finish, tool_calls=[call])


def test_endpoint_streams_tool_calls_and_sends_tools_and_results_back():
    server = Scripted()
    try:
        server.script = streams(
            sse(delta("Checking.")),
            sse(tool_delta(0, "srv_1", "get_weather", '{"ci')),
            sse(tool_delta(0, arguments='ty": "Paris"}')),
            sse(delta(None, "tool_calls")),
            sse(b"[DONE]"),
        )
        engine = OpenAIEngine(server.url, model="served-model")
        from qwenchat.chat.session import ChatSession

        session = ChatSession(engine)
        session.toolbox.definitions = [WEATHER]
        session.reasoning.mode = "off"
        result = session.send("Weather?")
        assert [(c.name, c.arguments) for c in result.tool_calls] == [("get_weather", {"city": "Paris"})]
        last = session.conversation.messages[-1]
        assert last.content == "Checking." and last.tool_calls[0]["name"] == "get_weather"
        body = server.requests[0]
        assert body["tools"] == [WEATHER] and body["chat_template_kwargs"] == {"enable_thinking": False}
        server.script = streams(sse(delta("21 degrees.", "stop")), sse(b"[DONE]"))
        session.tool_result('{"temp": 21}')
        sent = server.requests[1]["messages"]
        call = sent[-2]["tool_calls"][0]
        assert call["type"] == "function" and json.loads(call["function"]["arguments"]) == {"city": "Paris"}
        assert sent[-1]["role"] == "tool" and sent[-1]["tool_call_id"] == call["id"]
        assert session.conversation.messages[-1].content == "21 degrees."
    finally:
        server.close()


def test_malformed_tool_call_deltas_are_one_line():
    server = Scripted()
    try:
        server.script = streams(sse(delta(None, None, tool_calls={"index": 0})), sse(b"[DONE]"))
        engine = OpenAIEngine(server.url, model="served-model")
        request = GenerationRequest(messages=[{"role": "user", "content": "x"}], tools=[WEATHER])
        chunks = list(engine.stream(request, threading.Event()))
        assert chunks[-1].error == "the server sent a malformed event: tool_calls is not a list"
    finally:
        server.close()


def test_panel_shows_model_text_visibly_on_a_terminal():
    import io

    from qwenchat.tools.calls import parse_call
    from qwenchat.ui.render import Renderer
    from qwenchat.ui.terminal import make_console

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    buf = Tty()
    r = Renderer(make_console(buf, width=80, height=25))
    r.tool_call(parse_call('{"name": "get_\\u001b]0;pwned\\u0007weather", "arguments": {"x": "[bold]1"}}'))
    r.tool_call(parse_call("{nope", ["get_weather"]))
    shown = buf.getvalue()
    assert "\x1b]0;" not in shown and "\x07" not in shown and "␛]0;pwned␇" in shown
    assert "[bold]1" in shown  # markup is text, never interpreted
    assert "⚠ invalid JSON" in shown and "{nope" in shown
