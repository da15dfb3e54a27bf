"""Conversation tools through the REPL harness with the fake engine."""

from __future__ import annotations

import json
import sys

import pytest

from qwenchat.conversation.store import SessionStore
from tests.support.fakes import FakeEngine


@pytest.fixture
def app(out, tmp_path, make_repl):
    return make_repl(FakeEngine(), out, store=SessionStore(tmp_path / "sessions"))


def said(app) -> str:
    return app.renderer.buf.getvalue()


def contents(app):
    return [(m.role, m.content) for m in app.session.conversation.messages]


def test_system_show_set_remove(app):
    app.handle_line(":system")
    assert "You are a helpful assistant." in said(app)
    app.handle_line(":system You are a pirate.")
    app.handle_line("hi")
    assert app.session.engine.requests[-1].messages[0] == {"role": "system", "content": "You are a pirate."}
    app.handle_line(":system -")
    app.handle_line("hi")
    assert app.session.engine.requests[-1].messages[0]["role"] == "user"
    app.handle_line(":system default")
    assert app.session.conversation.system == "You are a helpful assistant."


def test_system_rejected_by_template_changes_nothing(app, monkeypatch):
    def strict(request):
        if request.messages and request.messages[0]["role"] == "system":
            raise ValueError("System role not supported")
        return ""

    app.handle_line(":system -")
    monkeypatch.setattr(app.session.engine, "render_prompt", strict)
    app.handle_line(":system be brief")
    assert "rejects that: System role not supported" in said(app)
    assert app.session.conversation.system is None


def test_retry_new_seed_and_given_seed(app):
    app.session.engine.enqueue(["first", "second", "third"])
    app.handle_line("q")
    app.handle_line(":retry")
    assert contents(app) == [("user", "q"), ("assistant", "second")]
    assert app.session.engine.requests[-1].seed != 1234
    app.handle_line(":regen 77")
    assert app.session.engine.requests[-1].seed == 77 and contents(app)[-1] == ("assistant", "third")
    # the retried request is the same conversation without the old answer
    assert [m["content"] for m in app.session.engine.requests[-1].messages[1:]] == ["q"]


def test_retry_error_keeps_old_answer(app):
    app.session.engine.enqueue(["kept", RuntimeError("boom")])
    app.handle_line("q")
    app.handle_line(":retry")
    assert contents(app) == [("user", "q"), ("assistant", "kept")]


def test_retry_and_undo_with_nothing(app):
    app.handle_line(":retry")
    app.handle_line(":undo")
    app.handle_line(":continue")
    text = said(app)
    assert "no answer to retry" in text and "nothing to undo" in text and "no answer to continue" in text


def test_undo_then_history(app):
    app.session.engine.enqueue(["a1", "a2"])
    app.handle_line("q1")
    app.handle_line("q2")
    app.handle_line(":undo")
    assert contents(app) == [("user", "q1"), ("assistant", "a1")]
    mark = len(said(app))
    app.handle_line(":his")
    assert "q1" in said(app)[mark:] and "q2" not in said(app)[mark:]


def test_continue_appends_to_last_answer(app):
    app.session.engine.enqueue(["The start", " and the end."])
    app.handle_line("q")
    app.handle_line(":continue")
    req = app.session.engine.requests[-1]
    assert req.continue_final and req.messages[-1] == {"role": "assistant", "content": "The start"}
    assert contents(app) == [("user", "q"), ("assistant", "The start and the end.")]


def test_edit_replaces_last_message(app, tmp_path, monkeypatch):
    script = tmp_path / "ed.py"
    script.write_text(
        "import sys\np = sys.argv[1]\nt = open(p).read()\nopen(p, 'w').write(t.replace('cat', 'dog'))\n"
    )
    monkeypatch.setenv("EDITOR", f"{sys.executable} {script}")
    monkeypatch.delenv("VISUAL", raising=False)
    app.session.engine.enqueue(["meow", "woof"])
    app.handle_line("say cat")
    app.handle_line(":edit")
    assert contents(app) == [("user", "say dog"), ("assistant", "woof")]


def test_edit_failing_editor_changes_nothing(app, monkeypatch):
    monkeypatch.setenv("EDITOR", "false")
    monkeypatch.delenv("VISUAL", raising=False)
    app.handle_line("q")
    before = contents(app)
    app.handle_line(":edit")
    assert "exited with status 1" in said(app) and contents(app) == before


def test_save_load_round_trip(app, out, tmp_path, make_repl):
    app.session.engine.enqueue(["answer ü"])
    app.handle_line(":system terse")
    app.handle_line(":conf temperature=0.2")
    app.handle_line(":seed 9")
    app.handle_line("question ✓")
    path = tmp_path / "s.json"
    app.handle_line(f":save {path}")
    other = make_repl(FakeEngine(), out)
    other.handle_line(f":load {path}")
    assert other.session.conversation == app.session.conversation
    assert other.session.settings.overrides == {"temperature": 0.2} and other.session.settings.seed == 9


@pytest.mark.parametrize(
    "content,msg",
    [
        ("{not json", "not valid JSON"),
        ("[]", ""),
        ('{"format": "something-else"}', "not a qwenchat session"),
        (None, "no such file"),
    ],
)
def test_load_bad_files_leave_session_untouched(app, tmp_path, content, msg):
    app.handle_line("keep me")
    before = contents(app)
    path = tmp_path / "bad.json"
    if content is not None:
        path.write_text(content)
    app.handle_line(f":load {path}")
    out = said(app)
    assert "error:" in out and msg in out
    assert contents(app) == before


def test_load_newer_version_and_hostile_settings(app, tmp_path):
    path = tmp_path / "s.json"
    app.handle_line("q")
    app.handle_line(f":save {path}")
    data = json.loads(path.read_text())
    data["version"] = 99
    path.write_text(json.dumps(data))
    app.handle_line(f":load {path}")
    assert "newer" in said(app)
    data["version"] = 1
    data["settings"] = {"temperature": "hot"}
    path.write_text(json.dumps(data))
    app.handle_line(f":load {path}")
    assert "temperature" in said(app).splitlines()[-1] and app.session.settings.overrides == {}


def test_autosave_after_every_turn_and_resume(app, out, tmp_path, make_repl):
    app.session.engine.enqueue(["a1", "a2"])
    app.handle_line("first question")
    app.handle_line("second")
    store = SessionStore(tmp_path / "sessions")
    [saved] = store.list()
    assert saved.title == "first question" and saved.conversation == app.session.conversation
    other = make_repl(FakeEngine(), out, store=store)
    other.handle_line(":sessions")
    assert "first question" in said(other)
    app.session.store.release()  # the first chat has ended (at exit); while it runs, a resume forks
    other.handle_line(":resume last")
    assert (
        other.session.conversation == app.session.conversation
        and other.session.session_id == app.session.session_id
    )


def test_export_markdown(app, tmp_path):
    app.session.engine.enqueue(["```python\nprint(1)\n```"])
    app.handle_line("show code")
    path = tmp_path / "chat.md"
    app.handle_line(f":export {path}")
    text = path.read_text()
    assert "show code" in text and "print(1)" in text and "fake-model" in text


def test_copy_emits_osc52(tmp_path, make_repl):
    import base64
    import io

    from rich.console import Console

    from qwenchat.ui.render import Renderer

    buf = io.StringIO()
    renderer = Renderer(Console(file=buf, force_terminal=True, width=80))  # a terminal gets the sequence
    renderer.buf = buf
    app = make_repl(FakeEngine(), renderer)
    app.session.engine.enqueue(["text before\n```sh\nls -la\n```\nafter"])
    app.handle_line("q")
    app.handle_line(":copy code")
    assert "\x1b]52;c;" + base64.b64encode(b"ls -la").decode() in said(app)
    app.handle_line(":copy 2")
    assert "answer number from 1 to 1" in said(app)


def test_template_and_tokens(app):
    app.session.engine.enqueue(["hello"])
    app.handle_line("hi")
    app.handle_line(":template")
    assert "<|user|>hi" in said(app) and "<your next message>" in said(app)
    app.handle_line(":tokens")
    assert "4096-token context" in said(app)


def test_overflow_drop_oldest_and_error(app):
    app.session.settings.apply("max_new_tokens=4")
    app.session.engine.enqueue(["a " * 5, "b " * 5, "c"])
    app.handle_line("one " * 5)
    app.handle_line("two " * 5)
    app.session.engine.ctx = 20  # now only the latest exchange fits
    app.handle_line("three")
    sent = [m["content"] for m in app.session.engine.requests[-1].messages]
    assert "one " * 5 not in [s for s in sent] and "three" in sent[-1]
    assert "context full" in said(app)
    assert len(app.session.conversation.messages) == 6  # nothing is lost from the history
    app.session.overflow = "error"
    app.handle_line("four")
    assert "exceeds the 20-token context" in said(app)
    assert app.session.conversation.messages[-1].content == "c"


def test_continue_inside_code_fence_renders_as_code(tmp_path, make_repl):
    """A continuation inside a fence is shown as code and stored without the reopened fence."""
    import io

    from rich.console import Console

    from qwenchat.ui.render import Renderer

    buf = io.StringIO()
    app = make_repl(FakeEngine(), Renderer(Console(file=buf, force_terminal=True, width=80, height=30)))
    app.session.engine.enqueue(["```python\nx = 1\n", "y = 2\n```\nDone."])
    app.handle_line("q")
    app.handle_line(":continue")
    assert app.session.conversation.messages[-1].content == "```python\nx = 1\ny = 2\n```\nDone."
    assert "```" not in buf.getvalue().split("x = 1")[-1]  # the fence itself is never printed as text


def test_in_process_commands_say_so_for_remote_engines(app):
    def remote(request):
        raise NotImplementedError("the chat template is not available for a remote engine")

    app.session.engine.render_prompt = remote
    app.session.engine.count_tokens = remote
    app.handle_line(":template")
    app.handle_line(":tokens")
    app.handle_line(":system be brief")  # the server applies the template: nothing to check here
    text = said(app)
    assert text.count("not available for a remote engine") == 2 and "internal error" not in text
    assert app.session.conversation.system == "be brief"


# -- new autosave sessions, refused overwrites, help examples, ~user paths ---------------------------
def test_clear_history_and_load_go_on_in_a_new_autosave_session(app, tmp_path):
    app.handle_line("the secret")
    first = app.session.session_id
    app.handle_line(":clh")
    app.handle_line("after the clear")
    assert app.session.session_id != first
    store = SessionStore(tmp_path / "sessions")
    texts = {s.id: [m.content for m in s.conversation.messages] for s in store.list()}
    assert texts[first] == ["the secret", "ok"]  # the old file keeps its turn
    assert texts[app.session.session_id] == ["after the clear", "ok"]
    path = tmp_path / "other.json"
    app.handle_line(f":save {path}")
    second = app.session.session_id
    app.handle_line(f":load {path}")
    assert app.session.session_id not in (first, second)


@pytest.mark.parametrize(("cmd", "name"), [("save", "s.json"), ("export", "s.md")])
def test_save_and_export_refuse_an_existing_file_and_a_missing_directory(app, tmp_path, cmd, name):
    app.handle_line("q")
    path = tmp_path / name
    path.write_text("keep")
    app.handle_line(f":{cmd} {path}")
    assert path.read_text() == "keep" and f":{cmd}! {path} overwrites it" in said(app)
    app.handle_line(f":{cmd}! {path}")
    assert path.read_text() != "keep"
    app.handle_line(f":{cmd} {tmp_path / 'missing' / name}")
    assert "there is no directory" in said(app) and not (tmp_path / "missing").exists()


def test_unknown_home_directory_is_one_line(app):
    for line in (":save ~nosuchuser17q/c.json", ":load ~0", ":export ~0"):
        app.handle_line(line)
    errors = [line for line in said(app).splitlines() if line.startswith("error:")]
    assert len(errors) == 3 and all("no home directory" in e for e in errors), errors


def test_every_command_has_an_example_shown_by_its_help(app):
    from qwenchat.commands import REGISTRY

    for cmd in REGISTRY:  # an example uses the command, by its name or an alias
        assert cmd.example.split()[0] in [":" + w for w in cmd.words], cmd.name
    app.handle_line(":h conf")
    assert "example: :conf temperature=0.2 stop_strings=['END']" in said(app)


def test_edit_shows_the_edited_message(app, monkeypatch, tmp_path):
    editor = tmp_path / "ed.sh"
    editor.write_text("#!/bin/sh\nprintf 'edited 4711' > \"$1\"\n")
    editor.chmod(0o755)
    monkeypatch.setenv("EDITOR", str(editor))
    monkeypatch.delenv("VISUAL", raising=False)
    app.handle_line("q")
    app.handle_line(":edit")
    assert "› edited 4711" in said(app) and contents(app)[-2] == ("user", "edited 4711")


def test_system_removed_names_the_template_default(app, monkeypatch):
    engine = app.session.engine

    def qwen_like(request):  # inserts its own system turn when there is none, as Qwen2.5's template does
        msgs = request.messages
        if not msgs or msgs[0]["role"] != "system":
            msgs = [{"role": "system", "content": "You are Qwen."}, *msgs]
        return "".join(f"<{m['role']}>{m['content']}</{m['role']}>" for m in msgs)

    app.handle_line(":system -")
    assert "inserts its own" not in said(app)  # the fake engine's template inserts nothing
    monkeypatch.setattr(engine, "render_prompt", qwen_like)
    app.handle_line(":system -")
    assert "the chat template then inserts its own system prompt: You are Qwen." in said(app)
