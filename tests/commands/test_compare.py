"""The command layer of :compare, :diff, :pick and :adapter, on the fake engine (the model runs are in
test_compare.py)."""

from __future__ import annotations

import io
import json

import pytest

from qwenchat.conversation.file import conversation_from_dict
from qwenchat.conversation.model import ConversationFormatError
from qwenchat.conversation.store import SessionStore
from qwenchat.ui.render import Renderer
from qwenchat.ui.terminal import make_console
from tests.support.fakes import FakeEngine


def transcript(app) -> str:
    return app.renderer.buf.getvalue()


@pytest.fixture
def app(out, make_repl, tmp_path):
    engine = FakeEngine().enqueue(["the first answer"])
    app = make_repl(engine, out, store=SessionStore(tmp_path / "sessions"))
    app.handle_line("hello")
    return app


def test_compare_runs_each_variant_and_leaves_the_settings_alone(app):
    s = app.session
    overrides, seed = dict(s.settings.overrides), s.settings.seed
    s.engine.enqueue(["cold answer", "warm answer here"])
    app.handle_line(":compare temperature=0.2,1.0 seed=1,2")
    first, second = s.engine.requests[-2:]
    assert (first.settings["temperature"], first.seed) == (0.2, 1)
    assert (second.settings["temperature"], second.seed) == (1.0, 2)
    # Both were asked the same conversation: the last message of yours, without the answer.
    assert first.messages == second.messages == s.engine.requests[0].messages
    assert (s.settings.overrides, s.settings.seed) == (overrides, seed)
    last = s.conversation.messages[-1]
    assert last.content == "the first answer"  # the history keeps its answer until :pick
    kept = [(a.label, a.content) for a in last.alternatives]
    assert kept == [("A", "cold answer"), ("B", "warm answer here")]
    assert last.alternatives[1].settings == {"temperature": 1.0, "seed": 2}
    text = transcript(app)
    assert "A · temperature=0.2 seed=1" in text and "B · temperature=1.0 seed=2" in text
    assert "differ from word 1" in text  # B against A
    assert not app.failed


def test_identical_variants_say_so(app):
    app.session.engine.enqueue(["same words", "same words"])
    app.handle_line(":compare seed=1,2")
    assert "identical" in transcript(app)


def test_grid_is_every_combination(app):
    app.session.engine.enqueue(["a", "b", "c", "d"])
    app.handle_line(":compare --grid seed=1,2 top_p=0.5,0.9")
    asked = [(r.seed, r.settings["top_p"]) for r in app.session.engine.requests[1:]]
    assert asked == [(1, 0.5), (1, 0.9), (2, 0.5), (2, 0.9)]


def test_system_variants_from_text_and_file(app, tmp_path):
    (tmp_path / "pirate.txt").write_text("Talk like a pirate.\n")
    app.handle_line(f":compare system='Be terse.',@{tmp_path / 'pirate.txt'}")
    systems = [r.messages[0] for r in app.session.engine.requests[1:]]
    assert systems == [
        {"role": "system", "content": "Be terse."},
        {"role": "system", "content": "Talk like a pirate."},
    ]
    assert app.session.conversation.system == "You are a helpful assistant."


@pytest.mark.parametrize(
    ("line", "error"),
    [
        (":compare", "usage: :compare"),
        (":compare tempreature=0.2,1.0", "unknown setting 'tempreature'; did you mean temperature"),
        (":compare top_p=0.5,7", "top_p must be in (0, 1]"),
        (":compare seed=1,x", "seed must be an integer"),
        (":compare engine=a,b", "engine: a chat runs on one engine"),
        (":compare endpoint=http://a,http://b", "endpoint: a chat runs on one engine"),
        (":compare adapter=off,on", "adapter: no switchable LoRA adapter is loaded"),
        (":compare seed=1,2 top_p=0.5,0.6,0.7", "zipped variants need the same number of values"),
        (":compare system=@/no/such/file,x", "system: cannot read /no/such/file"),
    ],
)
def test_bad_variants_are_one_line_and_run_nothing(app, line, error):
    before = list(app.session.conversation.messages)
    app.handle_line(line)
    assert f"error: {error}" in transcript(app)
    assert len(app.session.engine.requests) == 1  # only the first turn
    assert app.session.conversation.messages == before


def test_compare_needs_an_answer(out, make_repl):
    app = make_repl(FakeEngine(), out)
    app.handle_line(":compare seed=1,2")
    assert "error: there is no answer to compare yet" in transcript(app)


def test_pick_puts_the_variant_in_the_history_and_keeps_the_rest(app):
    s = app.session
    s.engine.enqueue(["answer A", "answer B"])
    app.handle_line(":compare seed=1,2")
    app.handle_line(":pick b")
    last = s.conversation.messages[-1]
    assert last.content == "answer B"
    assert [a.label for a in last.alternatives] == ["A", "B", "orig"]  # the replaced answer is kept
    assert s.conversation.to_chat()[-1] == {"role": "assistant", "content": "answer B"}  # no alternatives
    app.handle_line(":his")
    assert transcript(app).rstrip().endswith("answer B\n(alternatives kept in the session: A, B, orig)")
    app.handle_line(":pick orig")
    assert s.conversation.messages[-1].content == "the first answer"
    app.handle_line(":pick Z")
    assert "error: no variant 'Z'; this answer has A, B, orig" in transcript(app)


def test_alternatives_are_autosaved_and_read_back(app):
    s = app.session
    s.engine.enqueue(["answer A", "answer B"])
    app.handle_line(":compare seed=1,2")
    app.handle_line(":pick B")
    saved = s.store.resolve(s.session_id)
    assert saved.conversation.messages[-1].content == "answer B"
    assert saved.conversation.messages[-1].alternatives == s.conversation.messages[-1].alternatives
    data = json.loads(saved.path.read_text())
    assert data["conversation"]["version"] == 2


def test_each_variant_is_saved_as_it_finishes(app):
    """Nothing lost on a kill -9 after a variant completed: it is on disk before the next one starts."""
    s = app.session
    on_disk = []

    class Watch(FakeEngine):
        def stream(self, request, cancel):
            saved = s.store.resolve(s.session_id)
            on_disk.append(len(saved.conversation.messages[-1].alternatives))
            return super().stream(request, cancel)

    watch = Watch().enqueue(["x", "y", "z"])
    s.engine = watch
    app.handle_line(":compare seed=1,2,3")
    assert on_disk == [0, 1, 2]


def test_a_version_1_file_still_loads_and_bad_alternatives_are_one_line():
    v1 = {"version": 1, "system": None, "messages": [{"role": "user", "content": "hi"}]}
    assert conversation_from_dict(v1).messages[0].alternatives == ()
    bad = {
        "version": 2,
        "system": None,
        "messages": [
            {"role": "assistant", "content": "x", "alternatives": [{"label": "\x1b[2J", "content": "y"}]}
        ],
    }
    with pytest.raises(ConversationFormatError, match="^message 1, alternative 1: 'label' must be a short"):
        conversation_from_dict(bad)
    bad["messages"][0]["alternatives"] = [{"label": "A", "content": "y", "settings": {"k": {"x": 1}}}]
    with pytest.raises(ConversationFormatError, match="setting 'k' must be"):
        conversation_from_dict(bad)


def test_ctrl_c_stops_the_variant_and_the_compare(app):
    s = app.session
    s.engine.enqueue(["one two three four five six", "never", "never"])
    s.engine.interrupt_after = 3  # a real SIGINT during variant A
    app.handle_line(":compare seed=1,2,3")
    assert len(s.engine.requests) == 2  # B and C never started
    alts = s.conversation.messages[-1].alternatives
    assert [(a.label, a.interrupted) for a in alts] == [("A", True)]
    assert alts[0].content.startswith("one two") and "six" not in alts[0].content
    assert "compare stopped: 1 of 3 variants ran" in transcript(app)


def test_diff_marks_words_without_colours(app):
    app.session.engine.enqueue(["the cat sat on the mat", "the dog sat on the mat"])
    app.handle_line(":compare seed=1,2")
    app.handle_line(":diff A B")
    text = transcript(app)
    assert "A → B: differ from word 2" in text
    assert "the [-cat-] {+dog+} sat on the mat" in text
    app.handle_line(":diff A")
    assert "error: usage: :diff X Y" in transcript(app)


def test_diff_before_any_compare(app):
    app.handle_line(":diff A B")
    assert "error: the last answer has no compared variants" in transcript(app)


def _terminal(width: int) -> Renderer:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    buf = Tty()
    r = Renderer(make_console(buf, width=width, height=40), markdown=False)
    r.buf = buf
    return r


def test_side_by_side_when_wide_one_after_another_when_narrow(make_repl):
    for width, together in ((120, True), (50, False)):
        r = _terminal(width)
        app = make_repl(FakeEngine().enqueue(["first", "left answer", "right answer"]), r)
        app.handle_line("hi")
        app.handle_line(":compare seed=1,2")
        lines = r.buf.getvalue().splitlines()
        same_line = any("left answer" in line and "right answer" in line for line in lines)
        assert same_line == together, width


def test_model_text_in_columns_is_terminal_safe(make_repl):
    r = _terminal(120)
    app = make_repl(FakeEngine().enqueue(["first", "evil \x1b]0;pwned\x07 text", "fine"]), r)
    app.handle_line("hi")
    app.handle_line(":compare seed=1,2")
    assert "\x1b]0;" not in r.buf.getvalue()


def test_adapter_command_on_an_engine_without_adapters(app):
    app.handle_line(":adapter")
    assert "error: this engine cannot switch adapters" in transcript(app)
