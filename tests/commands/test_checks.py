""":check and :keep through the REPL with the fake engine (the command layer; the real model replays a kept
case in tests/checks/test_demo.py)."""

from __future__ import annotations

import json

import pytest

from qwenchat.batch.inputs import read_prompts
from qwenchat.conversation.store import SessionStore
from tests.support.fakes import FakeEngine


@pytest.fixture
def app(out, tmp_path, make_repl):
    return make_repl(
        FakeEngine().enqueue(["It is Paris.", "Yes, Paris."]), out, store=SessionStore(tmp_path / "s")
    )


def said(app) -> str:
    return app.renderer.buf.getvalue()


def test_check_the_last_answer(app):
    app.handle_line(":check contains=Paris")
    assert "no answer to check yet" in said(app)
    app.handle_line("capital of France?")
    app.handle_line(':check contains=Paris not_contains=Paris max_tokens=2 finish=stop regex="^It"')
    text = said(app)
    assert "✓ contains Paris: found 'Paris'" in text and "✗ not_contains Paris" in text
    assert "✗ max_tokens 2: 3 tokens (at most 2)" in text and "✓ finish stop" in text
    assert "3 of 5 checks passed" in text
    app.handle_line(":check contians=x")
    assert "error: :check: check 1: unknown check kind contians" in said(app)
    app.handle_line(":check")
    assert "usage: :check" in said(app)


def test_keep_appends_a_case_batch_reads(app, tmp_path):
    suite = tmp_path / "suite.jsonl"
    app.handle_line(f":keep {suite}")
    assert "no answer to keep yet" in said(app) and not suite.exists()
    app.handle_line(":system Be brief.")
    app.handle_line(":conf temperature=0.2")
    app.handle_line(":seed 7")
    app.handle_line("capital of France?")
    app.handle_line(f":keep {suite} contains=Paris")
    app.handle_line("and again?")
    app.handle_line(f":keep {suite} not_contains=Paris")
    text = said(app)
    assert "kept as case 1 of" in text and "kept as case 2 of" in text
    assert "note: not_contains Paris fails on this answer" in text
    first, second = (json.loads(x) for x in suite.read_text().splitlines())
    assert first == {
        "messages": [{"role": "user", "content": "capital of France?"}],
        "system": "Be brief.",
        "settings": {"temperature": 0.2},
        "seed": 7,
        "reference": "It is Paris.",
        "checks": [{"kind": "contains", "value": "Paris", "name": "contains Paris"}],
    }
    assert [m["role"] for m in second["messages"]] == ["user", "assistant", "user"]
    prompts = read_prompts(suite)
    assert [(p.seed, p.system, p.reference, p.settings) for p in prompts][0] == (
        7,
        "Be brief.",
        "It is Paris.",
        {"temperature": 0.2},
    )
    assert prompts[1].checks[0]["kind"] == "not_contains"


def test_keep_refusals_change_nothing(app, tmp_path):
    app.handle_line("hi")
    for line, needle in (
        (":keep", "usage: :keep"),
        (f":keep {tmp_path / 'suite.txt'}", "kept in a .jsonl file"),
        (f":keep {tmp_path / 's.jsonl'} regex=(", "not a valid pattern"),
        (f":keep {tmp_path}/nodir/s.jsonl", "cannot write it"),
    ):
        app.handle_line(line)
        assert needle in said(app), line
    assert list(tmp_path.glob("*.jsonl")) == [] and list(tmp_path.glob("*.txt")) == []


def test_check_tool_calls_of_the_last_answer(out, tmp_path, make_repl):
    """With tools loaded the call is taken out of the answer into the message: :check reads it there."""
    from tests.tools.test_tools import CALL, WEATHER

    tools = tmp_path / "tools.json"
    tools.write_text(json.dumps([WEATHER]))
    app = make_repl(FakeEngine().enqueue([f"Let me look. {CALL}"]), out)
    app.handle_line(f":tools {tools}")
    app.handle_line("weather in Paris?")
    app.handle_line(
        ':check tool_call=\'get_weather{"city": "Paris"}\' tool_call=get_time not_contains=tool_call'
    )
    text = said(app)
    assert "✓ tool_call get_weather: called get_weather" in text and "✗ tool_call get_time" in text
    assert "✓ not_contains tool_call" in text and "2 of 3 checks passed" in text
    app.handle_line(f":keep {tmp_path / 'k.jsonl'}")
    assert "tool calls: a batch file cannot replay them" in said(app)
