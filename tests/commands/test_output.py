""":json, :prefill, :read and :model through the REPL with the fake engine (the command layer only; the
real model's side is in test_json_schema.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from qwenchat.chat.switch import Switcher
from qwenchat.conversation.store import SessionStore
from qwenchat.settings import SettingsSchema
from qwenchat.structured.check import validate_answer
from qwenchat.structured.schema import SchemaError, load_schema
from tests.support.fakes import FakeEngine

SCHEMAS = Path(__file__).parents[1] / "schemas"
PERSON = SCHEMAS / "person.json"


@pytest.fixture
def app(out, tmp_path, make_repl):
    return make_repl(FakeEngine(), out, store=SessionStore(tmp_path / "sessions"))


def said(app) -> str:
    return app.renderer.buf.getvalue()


# -- validation and schema files ---------------------------------------------------------------------
def test_validate_answer_lines():
    schema = load_schema(PERSON)
    assert validate_answer('{"name": "Ann", "age": 3, "role": "admin"}', schema) == (
        True,
        "valid JSON for the schema",
    )
    ok, line = validate_answer('<think>hm</think>\n{"name": "Ann", "age": 3, "role": "boss"}', schema)
    assert not ok and line.startswith("invalid at $.role: 'boss' is not one of")
    ok, line = validate_answer('{"name": "Ann", "age": 3', schema)
    assert not ok and line.startswith("not JSON: ") and "line 1 column" in line
    ok, line = validate_answer('[{"task": "x", "done": 1}]', load_schema(SCHEMAS / "todos.json"))
    assert not ok and line == "invalid at $[0].done: 1 is not of type 'boolean'"
    assert validate_answer("", schema) == (False, "not JSON: the answer is empty")


def test_schema_files_refused_with_one_line(tmp_path):
    bad = tmp_path / "bad.json"
    cases = {
        "nope.json": "no such file",
        "notjson.json": "is not JSON",
        "list.json": "is not a JSON schema",
        "badtype.json": "is not a valid JSON schema",
    }
    (tmp_path / "notjson.json").write_text("{oops")
    (tmp_path / "list.json").write_text("[1]")
    (tmp_path / "badtype.json").write_text('{"type": 5}')
    for name, expected in cases.items():
        with pytest.raises(SchemaError, match=expected):
            load_schema(tmp_path / name)
    with pytest.raises(SchemaError, match="is a directory"):
        load_schema(tmp_path)
    bad.write_bytes(b"\xff\xfe")
    with pytest.raises(SchemaError, match="not UTF-8"):
        load_schema(bad)


def test_json_command_sets_shows_and_checks_each_answer(app):
    app.session.engine.enqueue(['{"name": "Ann", "age": 3, "role": "admin"}', '{"name": 1}'])
    app.handle_line(":json")
    assert "no JSON schema" in said(app)
    app.handle_line(f":json {PERSON}")
    assert app.session.json_schema == json.loads(PERSON.read_text())
    app.handle_line(":json")
    assert '"required": [' in said(app)
    app.handle_line("a person")
    assert app.session.engine.requests[-1].json_schema == app.session.json_schema
    assert "json: valid JSON for the schema" in said(app)
    app.handle_line("another")
    assert "json: invalid at $: 'age' is a required property" in said(app)
    app.handle_line(":json off")
    app.handle_line("free text")
    assert app.session.engine.requests[-1].json_schema is None
    assert said(app).count("json: ") == 2


def test_json_command_bad_file_changes_nothing(app, tmp_path):
    app.handle_line(f":json {PERSON}")
    (tmp_path / "x.json").write_text('{"type": "nonsense"}')
    app.handle_line(f":json {tmp_path / 'x.json'}")
    assert "error: " in said(app) and app.failed
    assert app.session.json_schema == json.loads(PERSON.read_text())


# -- :prefill ------------------------------------------------------------------------------------------
def test_prefill_continues_an_answer_that_starts_with_it(app):
    app.session.engine.enqueue([' "Ann"}', "next"])
    app.handle_line(':prefill {"name":')
    app.handle_line("a name as JSON")
    req = app.session.engine.requests[-1]
    assert req.continue_final and req.messages[-1] == {"role": "assistant", "content": '{"name":'}
    assert app.session.conversation.messages[-1].content == '{"name": "Ann"}'
    assert '{"name": "Ann"}' in said(app)  # the prefill is shown as the answer's start
    app.handle_line("again")  # used once: the next answer is a fresh one
    assert not app.session.engine.requests[-1].continue_final
    assert app.session.conversation.messages[-1].content == "next"


def test_prefill_clear_and_failed_turn_keeps_it(app):
    app.handle_line(":prefill Sure")
    app.handle_line(":prefill")
    assert app.session.prefill is None and "prefill cleared" in said(app)
    app.session.engine.enqueue([RuntimeError("boom")])
    app.handle_line(":prefill Sure")
    app.handle_line("hi")
    assert app.session.prefill == "Sure" and app.session.conversation.messages == []


# -- :read ---------------------------------------------------------------------------------------------
def test_read_puts_fenced_files_before_the_next_message(app, tmp_path):
    a = tmp_path / "a.py"
    a.write_text("print('hi')\n```\nnot a fence end\n````\n")
    b = tmp_path / "notes.txt"
    b.write_text("plain")
    app.handle_line(f":read {a} {b}")
    assert "read 2 files:" in said(app) and "tokens" in said(app)
    app.handle_line("explain")
    sent = app.session.engine.requests[-1].messages[-1]["content"]
    assert sent.startswith(f"File `{a}`:\n\n`````python\nprint('hi')")
    assert "\n`````\n\nFile `" in sent and sent.endswith("```text\nplain\n```\n\nexplain")
    app.handle_line("no files now")
    assert app.session.engine.requests[-1].messages[-1]["content"] == "no files now"


def test_read_refuses_bad_files_with_one_line(app, tmp_path):
    (tmp_path / "bin").write_bytes(b"\x7fELF\x00\x01")
    (tmp_path / "latin").write_bytes("caf\xe9".encode("latin-1"))
    (tmp_path / "ok.txt").write_text("fine")
    for name, line in [
        ("missing.txt", "no such file"),
        ("bin", "is a binary file"),
        ("latin", "is not UTF-8 text"),
        (".", "is a directory"),
    ]:
        app.handle_line(f":read {tmp_path / 'ok.txt'} {tmp_path / name}")
        assert line in said(app).splitlines()[-1]
    assert app.session.attachments == []  # one bad file: none is added


def test_read_checks_the_context_window(app, tmp_path):
    app.session.engine.ctx = 50
    big = tmp_path / "big.txt"
    big.write_text("word " * 200)
    app.handle_line(f":read {big}")
    assert "exceeds the 50-token context; nothing was added" in said(app)
    assert app.session.attachments == []


# -- :model --------------------------------------------------------------------------------------------
class OtherEngine(FakeEngine):
    name = "other-model"

    def settings_schema(self) -> SettingsSchema:
        from qwenchat.settings import COMMON

        return SettingsSchema("the other engine", {k: v for k, v in COMMON.items() if k != "top_k"})


def _switcher(made):
    asked = []

    def load(spec, renderer):
        asked.append(spec)
        return made

    return Switcher(load, {}, {}), asked


def test_model_switch_carries_the_chat_and_names_refused_settings(app, tmp_path):
    from qwenchat.chat.switch import switch_in_chat

    app.handle_line(":system Be brief.")
    app.handle_line(":conf top_k=5 temperature=0.3")
    app.handle_line("hello")
    old_id = app.session.session_id
    saved = (tmp_path / "sessions" / f"{old_id}.json").read_text()
    new = OtherEngine()
    switcher, asked = _switcher((new, {"model": "other-model", "device": "cpu", "dtype": "x", "extra": []}))
    app.switch_model = lambda spec: switch_in_chat(app.session, app.renderer, switcher, spec)
    app.handle_line(":model demo")
    assert asked == ["demo"]
    assert app.session.engine is new and app.session.settings.overrides == {"temperature": 0.3}
    assert "cannot honour top_k from your settings: dropped" in said(app)
    assert "qwenchat · other-model · cpu · x" in said(app)  # the banner again
    app.handle_line("and now?")
    req = new.requests[-1]
    assert req.messages[0] == {"role": "system", "content": "Be brief."}
    assert [m["content"] for m in req.messages[1:]] == ["hello", "ok", "and now?"]
    # The session left behind keeps its file; the chat autosaves under a new id from now on.
    assert app.session.session_id != old_id
    assert (tmp_path / "sessions" / f"{old_id}.json").read_text() == saved


def test_model_failed_load_keeps_the_old_model(app):
    from qwenchat.chat.switch import switch_in_chat

    old = app.session.engine
    switcher, _ = _switcher(None)
    app.switch_model = lambda spec: switch_in_chat(app.session, app.renderer, switcher, spec)
    app.handle_line(":model ./nowhere")
    assert app.session.engine is old and "could not load ./nowhere" in said(app)
    app.handle_line("still there?")
    assert old.requests


# -- the flags, through the CLI with the fake engine ------------------------------------------------------
def test_cli_json_schema_and_read_flags(tmp_path):
    from tests.cli.test_app import Run

    notes = tmp_path / "notes.txt"
    notes.write_text("remember the milk")
    run = Run(tmp_path, "what is in it?\n", answers=['{"name": "A", "age": 1, "role": "viewer"}'])
    assert run("--json-schema", str(PERSON), "--read", str(notes)) == 0
    req = run.engine.requests[-1]
    assert req.json_schema == json.loads(PERSON.read_text())
    assert req.messages[-1]["content"].endswith("```text\nremember the milk\n```\n\nwhat is in it?")
    assert run.out.strip() == '{"name": "A", "age": 1, "role": "viewer"}'  # stdout: the answer only
    assert "read 1 file:" in run.err and "json: valid JSON for the schema" in run.err


def test_cli_bad_schema_or_file_fails_before_the_chat(tmp_path):
    from tests.cli.test_app import Run

    run = Run(tmp_path, "hi\n")
    assert run("--json-schema", str(tmp_path / "none.json")) == 2
    assert run.err.startswith("error: no such file") and run.factory_calls == []  # before the model load
    run = Run(tmp_path, "hi\n")
    assert run("--read", str(tmp_path / "none.txt")) == 2
    assert "no such file" in run.err and run.engine.requests == []


def test_cli_model_command_uses_the_start_flags(tmp_path):
    from tests.cli.test_app import Run

    run = Run(tmp_path, ":model other/model\nhello\n")
    assert run("--temperature", "0.5") == 0
    assert [a.checkpoint_path for a in run.factory_calls] == [None, "other/model"]
    assert run.engine.requests[-1].settings["temperature"] == 0.5
    assert "switched to fake-model" in run.err
