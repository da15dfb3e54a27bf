"""The REPL and its commands, driven without a terminal through a fake engine."""

from __future__ import annotations

import pytest

from tests.support.fakes import FakeEngine


@pytest.fixture
def app(out, make_repl):
    return make_repl(FakeEngine(), out)


def transcript(app) -> str:
    return app.renderer.buf.getvalue()


def test_chat_turn_streams_and_records(app):
    app.session.engine.enqueue(["Hello there, friend."])
    app.handle_line("hi")
    assert "Hello there, friend." in transcript(app)
    req = app.session.engine.requests[-1]
    assert req.messages[-1] == {"role": "user", "content": "hi"}
    assert req.messages[0]["role"] == "system" and req.seed == 1234
    assert [(m.role, m.content) for m in app.session.conversation.messages] == [
        ("user", "hi"),
        ("assistant", "Hello there, friend."),
    ]


def test_history_is_sent_every_turn(app):
    app.session.engine.enqueue(["one", "two"])
    app.handle_line("a")
    app.handle_line("b")
    assert [m["content"] for m in app.session.engine.requests[-1].messages[1:]] == ["a", "one", "b"]


def test_empty_input_hint(app):
    app.handle_line("   ")
    assert "Type a message" in transcript(app) and app.session.engine.requests == []


def test_unknown_command_did_you_mean(app):
    app.handle_line(":hsitory")
    assert "unknown command :hsitory" in transcript(app) and ":history" in transcript(app)


def test_help_lists_every_command(app):
    app.handle_line(":h")
    text = transcript(app)
    for cmd in app.registry:
        assert cmd.usage in text
    # the reproducibility contract, and what bends it
    assert "Reproducible:" in text and "--lookup" in text and "--compile" in text


def test_seed_and_conf_reach_the_engine(app):
    app.handle_line(":seed 99")
    app.handle_line(":conf temperature=0.1 max_new_tokens=32")
    app.handle_line("go")
    req = app.session.engine.requests[-1]
    assert req.seed == 99 and req.settings["temperature"] == 0.1 and req.settings["max_new_tokens"] == 32
    app.handle_line(":reset-conf")
    app.handle_line("again")
    req = app.session.engine.requests[-1]
    assert req.seed == 1234 and req.settings["temperature"] == 0.7


def test_bad_conf_changes_nothing(app):
    app.handle_line(":conf temperature=abc")
    assert "error: temperature must be float" in transcript(app)
    assert app.session.settings.overrides == {}


def test_conf_shows_source(app):
    app.handle_line(":conf top_p=0.5")
    app.handle_line(":conf")
    text = transcript(app)
    assert "top_p" in text and "you" in text and "changed by you: top_p" in text
    app.handle_line(":conf all")
    assert "repetition_penalty" in transcript(app)


def test_clear_history_resets_engine(app):
    app.handle_line("a")
    app.handle_line(":clh")
    assert app.session.conversation.messages == [] and app.session.engine.resets == 1
    app.handle_line(":his")
    assert "(no history)" in transcript(app)


def test_history_shows_messages(app):
    app.session.engine.enqueue(["the answer"])
    app.handle_line("the question")
    app.handle_line(":his")
    text = transcript(app)
    assert "[user]" in text and "the question" in text and "[assistant]" in text


def test_error_in_generate_keeps_session(app):
    app.session.engine.enqueue([RuntimeError("CUDA out of memory"), "fine"])
    app.handle_line("first")
    assert "error: CUDA out of memory" in transcript(app)
    assert app.session.conversation.messages == []  # nothing half-recorded
    app.handle_line("second")
    assert [m.content for m in app.session.conversation.messages] == ["second", "fine"]


def test_ctrl_c_keeps_partial_answer(app):
    app.session.engine.enqueue(["one two three four five six seven eight nine ten"])
    app.session.engine.interrupt_after = 3
    app.handle_line("count")
    last = app.session.conversation.messages[-1]
    assert last.role == "assistant" and last.interrupted
    assert last.content.startswith("one two") and "ten" not in last.content
    assert "interrupted" in transcript(app)
    app.session.engine.interrupt_after = None
    app.handle_line(":his")
    assert "(interrupted)" in transcript(app)


def test_quit_aliases(out, make_repl):
    for word in (":q", ":quit", ":exit", ":Q"):
        app = make_repl(FakeEngine(), out)
        app.handle_line(word)
        assert app.should_exit


def test_double_colon_sends_literal(app):
    app.handle_line("::not a command")
    assert app.session.engine.requests[-1].messages[-1]["content"] == ":not a command"


def test_pipe_mode_runs_lines_and_stops_at_quit(app):
    app.session.engine.enqueue(["A1", "A2", "A3"])
    app.run_lines(["q1\n", "\n", ":seed 5\n", "q2\n", ":q\n", "q3\n"])
    assert [r.messages[-1]["content"] for r in app.session.engine.requests] == ["q1", "q2"]
    assert app.session.engine.requests[-1].seed == 5
    assert "\x1b" not in transcript(app)


def test_stats_toggle(app):
    app.handle_line(":stats on")
    app.handle_line("x")
    assert "prompt 10 tok" in transcript(app)
    app.handle_line(":stats bogus")
    assert "takes on or off" in transcript(app) and app.show_stats


def test_interactive_loop_with_pipe_input(out, make_repl):
    """prompt_toolkit driven through a pipe input and a dummy output: no terminal needed."""
    from prompt_toolkit.input import create_pipe_input
    from prompt_toolkit.output import DummyOutput

    app = make_repl(FakeEngine().enqueue(["pong"]), out)
    with create_pipe_input() as inp:
        inp.send_text("ping\r")
        inp.send_text("\x03")  # Ctrl-C at the prompt: clears the line, no exit
        inp.send_text(":his\r")
        inp.send_text("\x04")  # Ctrl-D: leave
        app.run_interactive(input=inp, output=DummyOutput())
    assert [m.content for m in app.session.conversation.messages] == ["ping", "pong"]
    assert "pong" in transcript(app)


def test_completer_offers_commands_and_args(out, make_repl):
    from prompt_toolkit.document import Document

    from qwenchat.ui.repl import _completer

    app = make_repl(FakeEngine(), out)
    comp = _completer(app.registry, app)
    words = [c.text for c in comp.get_completions(Document(":cl"), None)]
    assert ":clear" in words and ":clh" in words and ":clear-history" in words
    words = [c.text for c in comp.get_completions(Document(":think f"), None)]
    assert words == ["fold"]
    words = [c.text for c in comp.get_completions(Document(":conf temp"), None)]
    assert "temperature" in words
    assert list(comp.get_completions(Document("hello"), None)) == []


def test_triple_quote_block_in_pipe_mode(app):
    app.run_lines(['"""first line\n', "\n", "second line\n", 'end"""\n', '"""one-liner"""\n'])
    msgs = [r.messages[-1]["content"] for r in app.session.engine.requests]
    assert msgs == ["first line\n\nsecond line\nend", "one-liner"]


def test_alt_enter_inserts_newline(out, make_repl):
    from prompt_toolkit.input import create_pipe_input
    from prompt_toolkit.output import DummyOutput

    app = make_repl(FakeEngine(), out)
    with create_pipe_input() as inp:
        inp.send_text("line one\x1b\rline two\r")  # Esc+Enter (what Alt-Enter sends), then Enter
        inp.send_text('"""\rblock a\rblock b"""\r')
        inp.send_text("\x04")
        app.run_interactive(input=inp, output=DummyOutput())
    assert [r.messages[-1]["content"] for r in app.session.engine.requests] == [
        "line one\nline two",
        "block a\nblock b",
    ]


def test_a_failing_command_is_one_line(app):
    from qwenchat.commands import Registry

    reg = Registry()

    @reg.command("boom", help="raises")
    def boom(app, args):
        raise ZeroDivisionError("division by zero")

    app.registry = reg
    app.handle_line(":boom")
    assert "error: internal error in :boom: ZeroDivisionError: division by zero" in transcript(app)
    assert not app.should_exit


def test_ctrl_c_during_autosave_or_the_answers_end_stops_nothing(out, make_repl, tmp_path):
    """A SIGINT after the last word (in the renderer's end, in the autosave) must not raise: the shown
    answer is kept and saved, and the REPL goes on."""
    import os
    import signal

    from qwenchat.conversation.store import SessionStore

    class PressingStore(SessionStore):
        def autosave(self, *args, **kwargs):
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C as the answer is written
            return super().autosave(*args, **kwargs)

    store = PressingStore(tmp_path / "sessions")
    app = make_repl(FakeEngine().enqueue(["all of it", "second"]), out, store=store)
    view_end = out.answer

    def pressing_answer(*args, **kwargs):
        view = view_end(*args, **kwargs)
        end = view.end

        def end_with_press(*a, **k):
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C as the answer's end is drawn
            return end(*a, **k)

        view.end = end_with_press
        return view

    out.answer = pressing_answer
    app.handle_line("q")
    app.handle_line("q2")
    saved = store.list()[0].conversation.messages
    assert [m.content for m in saved] == ["q", "all of it", "q2", "second"]
    assert not any(m.interrupted for m in saved)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # put back after the turn


def test_sigint_while_the_prompt_starts_is_ignored(out, make_repl, monkeypatch):
    """Ctrl-C lands as a signal only outside the prompt's raw mode (its start and stop): no exception."""
    import os
    import signal

    from prompt_toolkit import PromptSession
    from prompt_toolkit.input import create_pipe_input
    from prompt_toolkit.output import DummyOutput

    real_prompt = PromptSession.prompt

    def pressed_as_it_starts(self, *args, **kwargs):
        os.kill(os.getpid(), signal.SIGINT)
        return real_prompt(self, *args, **kwargs)

    monkeypatch.setattr(PromptSession, "prompt", pressed_as_it_starts)
    app = make_repl(FakeEngine().enqueue(["pong"]), out)
    with create_pipe_input() as inp:
        inp.send_text("ping\r\x04")
        app.run_interactive(input=inp, output=DummyOutput())
    assert [m.content for m in app.session.conversation.messages] == ["ping", "pong"]


def run_keys(make_repl, out, monkeypatch, *keys: str):
    """The keys typed at a prompt whose cap is 32 characters for the fake's 4,096-token context."""
    from prompt_toolkit.input import create_pipe_input
    from prompt_toolkit.output import DummyOutput

    from qwenchat.ui import repl

    monkeypatch.setattr(repl, "input_cap", lambda window: 32 if window == 4096 else 0)
    app = make_repl(FakeEngine().enqueue(["a1", "a2", "a3"]), out)
    with create_pipe_input() as inp:
        for k in keys:
            inp.send_text(k)
        inp.send_text("\x04")
        app.run_interactive(input=inp, output=DummyOutput())
    return app, [r.messages[-1]["content"] for r in app.session.engine.requests]


def test_typed_input_stops_at_the_cap_from_the_context_with_one_notice(out, make_repl, monkeypatch):
    app, sent = run_keys(make_repl, out, monkeypatch, "x" * 40 + "\r", "short\r")
    assert sent == ["x" * 32, "short"]
    assert transcript(app).count("input limit: a message takes at most 32 characters here") == 1
    assert "the model's context holds 4,096 tokens" in transcript(app)


def test_a_paste_is_inserted_whole_or_not_at_all(out, make_repl, monkeypatch):
    fits = "line one\r\nline two " + "y" * 10
    too_long = "z" * 33
    app, sent = run_keys(
        make_repl, out, monkeypatch, f"\x1b[200~{fits}\x1b[201~\r", f"\x1b[200~{too_long}\x1b[201~", "ok\r"
    )
    assert sent == [fits.replace("\r\n", "\n"), "ok"]  # nothing of the long paste, nothing cut
    assert transcript(app).count("this paste (33 characters) cannot fit") == 1
    assert "nothing was inserted" in transcript(app)


def test_the_cap_comes_from_the_context_window():
    from qwenchat.ui.repl import NO_WINDOW_CAP, input_cap

    assert input_cap(32768) == 32768 * 16 > 200_000  # a 200k-character paste fits the demo model's cap
    assert input_cap(None) == NO_WINDOW_CAP


def test_typing_keeps_one_undo_state_per_run_of_keys(out, make_repl):
    """Undo (Ctrl-_) still takes back what was typed, without a copy of the line per key."""
    from prompt_toolkit.input import create_pipe_input
    from prompt_toolkit.output import DummyOutput

    app = make_repl(FakeEngine().enqueue(["a1"]), out)
    with create_pipe_input() as inp:
        inp.send_text("first words\x1fsecond\r\x04")
        app.run_interactive(input=inp, output=DummyOutput())
    assert [r.messages[-1]["content"] for r in app.session.engine.requests] == ["second"]
