"""ChatSession without a terminal: what a turn returns, what the history keeps, and all-or-nothing changes."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator

import pytest

from qwenchat.chat.observer import Headless, TurnResult
from qwenchat.chat.session import ChatSession
from qwenchat.conversation.store import SessionStore, save_file
from qwenchat.engines.api import Chunk, GenerationRequest, TurnStats
from qwenchat.errors import ChatError, UserError
from qwenchat.settings import NEUTRAL, SettingsSchema
from tests.support.fakes import FakeEngine


def history(session: ChatSession) -> list[tuple[str, str, bool]]:
    return [(m.role, m.content, m.interrupted) for m in session.conversation.messages]


class Recorder:
    """An observer that records what a UI would see, and can raise Ctrl-C on chosen feeds."""

    def __init__(self, interrupt_on: tuple[int, ...] = ()) -> None:
        self.events: list[tuple] = []
        self.interrupt_on = interrupt_on
        self.feeds = 0

    def answer(self, *, think_open, continues):
        self.events.append(("answer", think_open, continues))
        return self

    def feed(self, text: str) -> None:
        self.feeds += 1
        self.events.append(("feed", text))
        if self.feeds in self.interrupt_on:
            raise KeyboardInterrupt

    def end(self, finish_reason, stats=None, error=None) -> None:
        self.events.append(("end", finish_reason, error))

    def turn_done(self, result: TurnResult) -> None:
        self.events.append(("done", result.finish_reason, result.kept))

    def notice(self, text: str) -> None:
        self.events.append(("notice", text))


def test_send_headless_returns_answer_and_stats():
    session = ChatSession(FakeEngine().enqueue(["Hello there, friend."]))
    result = session.send("hi")
    assert result.text == "Hello there, friend." and result.finish_reason == "stop" and result.kept
    assert result.stats is not None and result.stats.generated_tokens == 3
    assert session.last_stats is result.stats
    assert history(session) == [("user", "hi", False), ("assistant", "Hello there, friend.", False)]
    req = session.engine.requests[-1]
    assert req.messages[0]["role"] == "system" and req.messages[-1] == {"role": "user", "content": "hi"}


def test_failed_turn_leaves_history_exactly_as_it_was():
    session = ChatSession(FakeEngine().enqueue(["a1", RuntimeError("CUDA out of memory")]))
    session.send("q1")
    before = history(session)
    result = session.send("q2")
    assert not result.kept and result.finish_reason == "error" and result.error == "CUDA out of memory"
    assert history(session) == before


def test_observer_sees_the_stream_in_order():
    rec = Recorder()
    session = ChatSession(FakeEngine().enqueue(["one two"]), observer=rec)
    session.send("q")
    assert rec.events == [
        ("answer", None, None),
        ("feed", "one"),
        ("feed", " two"),
        ("feed", ""),
        ("end", "stop", None),
        ("done", "stop", True),
    ]


def test_ctrl_c_keeps_partial_answer_headless():
    # Python's own handler, as in a terminal: a run started in the background (nohup ... &) inherits
    # SIGINT ignored, and the signal below would be lost.
    old = signal.signal(signal.SIGINT, signal.default_int_handler)
    engine = FakeEngine().enqueue(["one two three four five six seven eight nine ten"])
    engine.interrupt_after = 3  # a real SIGINT, as a terminal sends it
    session = ChatSession(engine)
    try:
        result = session.send("count")
    finally:
        signal.signal(signal.SIGINT, old)
    assert result.finish_reason == "interrupted" and result.kept
    role, content, interrupted = history(session)[-1]
    assert role == "assistant" and interrupted
    assert content.startswith("one two") and "ten" not in content


class DrainEngine:
    """Keeps sending after a cancel (as a real engine finishing its step does), then ends 'interrupted'."""

    name = "drain"
    context_window = None

    def default_settings(self) -> dict:
        return {}

    def settings_schema(self) -> SettingsSchema:
        return NEUTRAL

    def stream(self, request: GenerationRequest, cancel: threading.Event) -> Iterator[Chunk]:
        for word in ["a", "b", "c", "d"]:
            if cancel.is_set():
                break
            yield Chunk(text=word)
        if cancel.is_set():
            yield Chunk(text=" (rest)")
        reason = "interrupted" if cancel.is_set() else "stop"
        yield Chunk(finish_reason=reason, stats=TurnStats(finish_reason=reason))

    def render_prompt(self, request):
        return ""

    def count_tokens(self, request):
        return 0

    def reset(self):
        pass


def test_ctrl_c_in_the_ui_cancels_and_drains_ignoring_more_ctrl_c():
    rec = Recorder(interrupt_on=(2, 3))  # Ctrl-C while 'b' is shown, and again during the drain
    session = ChatSession(DrainEngine(), observer=rec)
    result = session.send("q")
    assert result.finish_reason == "interrupted" and result.text == "ab (rest)"
    assert history(session)[-1] == ("assistant", "ab (rest)", True)
    assert [e for e in rec.events if e[0] == "end"] == [("end", "interrupted", None)]


def test_retry_error_keeps_old_answer_and_seed_stays():
    session = ChatSession(FakeEngine().enqueue(["kept", RuntimeError("boom")]))
    session.send("q")
    result = session.retry(seed=77)
    assert not result.kept and session.settings.seed == 77
    assert history(session) == [("user", "q", False), ("assistant", "kept", False)]
    assert session.engine.requests[-1].seed == 77
    assert [m["content"] for m in session.engine.requests[-1].messages[1:]] == ["q"]


def test_retry_undo_continue_edit_with_nothing():
    session = ChatSession(FakeEngine())
    for call in (session.retry, session.undo, session.continue_, lambda: session.edit("x")):
        with pytest.raises(ChatError):
            call()
    assert issubclass(ChatError, UserError) and session.conversation.messages == []


def test_edit_failure_restores_what_followed():
    session = ChatSession(FakeEngine().enqueue(["a1", "a2", RuntimeError("boom"), "a3"]))
    session.send("q1")
    session.send("q2")
    before = history(session)
    assert session.last_user_text() == "q2"
    assert not session.edit("q2 edited").kept
    assert history(session) == before
    assert session.edit("q2 again").kept
    assert history(session)[-2:] == [("user", "q2 again", False), ("assistant", "a3", False)]


def test_continue_appends_and_clears_the_mark():
    engine = FakeEngine().enqueue(["The start", " and the end."])
    session = ChatSession(engine)
    session.send("q")
    session.conversation.messages[-1].interrupted = True
    rec = Recorder()
    session.observer = rec
    result = session.continue_()
    assert result.text == " and the end."
    assert engine.requests[-1].continue_final
    assert history(session)[-1] == ("assistant", "The start and the end.", False)
    assert rec.events[0] == ("answer", None, "The start")


def test_undo_returns_the_exchange():
    session = ChatSession(FakeEngine().enqueue(["a1", "a2"]))
    session.send("q1")
    session.send("q2")
    removed = session.undo()
    assert [(m.role, m.content) for m in removed] == [("user", "q2"), ("assistant", "a2")]
    assert history(session) == [("user", "q1", False), ("assistant", "a1", False)]


def test_overflow_error_refuses_and_drop_oldest_notices():
    engine = FakeEngine().enqueue(["a " * 5, "b " * 5, "c"])
    session = ChatSession(engine)
    session.settings.apply("max_new_tokens=4")
    session.send("one " * 5)
    session.send("two " * 5)
    engine.ctx = 20
    session.send("three")
    assert "one " * 5 not in [m["content"] for m in engine.requests[-1].messages]
    assert any("context full" in n for n in session.observer.notices)
    assert len(session.conversation.messages) == 6
    session.overflow = "error"
    before = history(session)
    with pytest.raises(ChatError, match="exceeds the 20-token context"):
        session.send("four")
    assert history(session) == before and len(engine.requests) == 3


def test_ctrl_c_before_the_stream_leaves_history_and_propagates():
    engine = FakeEngine()

    def interrupted(request):
        raise KeyboardInterrupt

    engine.count_tokens = interrupted
    session = ChatSession(engine)
    with pytest.raises(KeyboardInterrupt):
        session.send("q")
    assert session.conversation.messages == []


def test_set_system_rejected_changes_nothing():
    engine = FakeEngine()

    def strict(request):
        if request.messages[0]["role"] == "system":
            raise ValueError("System role not supported\nmore detail")
        return ""

    session = ChatSession(engine)
    session.set_system(None)
    engine.render_prompt = strict
    with pytest.raises(ChatError, match="rejects that: System role not supported$"):
        session.set_system("be brief")
    assert session.conversation.system is None


def test_autosave_writes_once_per_change_and_failure_is_a_notice(tmp_path):
    store = SessionStore(tmp_path / "sessions")
    session = ChatSession(FakeEngine().enqueue(["a"]), store=store)
    session.autosave()
    assert store.list() == []  # nothing said yet: nothing saved
    session.send("q")
    session.autosave()
    [saved] = store.list()
    assert saved.id == session.session_id and saved.conversation == session.conversation
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    session.store = SessionStore(blocker / "sessions")  # a directory that cannot be made
    session.settings.apply("temperature=0.1")
    session.autosave()
    assert any(n.startswith("autosave failed") for n in session.observer.notices)


def test_adopt_takes_settings_and_refuses_what_does_not_apply(tmp_path):
    source = ChatSession(FakeEngine().enqueue(["a"]))
    source.settings.apply("temperature=0.2")
    source.settings.set_seed("9")
    source.send("q")
    saved = source.save(tmp_path / "s.json")
    session = ChatSession(FakeEngine())
    session.adopt(saved)
    assert session.conversation == source.conversation
    assert session.settings.overrides == {"temperature": 0.2} and session.settings.seed == 9
    assert session.session_id != saved.id  # a loaded file is a new session; a resumed one is not
    saved.settings = {"min_new_tokens": 50, "max_new_tokens": 10}
    with pytest.raises(ChatError, match="do not apply"):
        session.adopt(saved, session_id=saved.id)
    assert session.settings.overrides == {"temperature": 0.2} and session.session_id != saved.id


def test_adopt_from_another_model_is_a_notice(tmp_path):
    other = FakeEngine()
    other.name = "other-model"
    saved = save_file(
        tmp_path / "s.json",
        ChatSession(other).conversation,
        model="other-model",
        settings_overrides={},
        seed=1,
    )
    session = ChatSession(FakeEngine(), observer=Headless())
    session.adopt(saved, session_id=saved.id, created=saved.created)
    assert session.session_id == saved.id and session.created == saved.created
    assert session.observer.notices == ["this session was saved with other-model; continuing with fake-model"]


def test_a_headless_session_loads_no_terminal_or_model_library():
    import subprocess
    import sys

    code = (
        "import sys, qwenchat.chat.session; "
        "print(sorted(m for m in ('rich', 'prompt_toolkit', 'torch', 'transformers') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_interrupt_stops_the_running_turn_and_is_a_no_op_between_turns():
    session = ChatSession(DrainEngine())
    session.interrupt()  # no turn: nothing happens, the next turn is not pre-cancelled
    rec = Recorder()
    rec.feed = lambda text: session.interrupt() if text == "b" else None  # as the SIGINT handler does
    session.observer = rec
    result = session.send("q")
    assert result.finish_reason == "interrupted" and result.text == "ab (rest)" and result.kept
    rec.feed = lambda text: None
    assert session.send("again").finish_reason == "stop"


def test_a_session_open_in_another_process_is_forked_not_overwritten(tmp_path):
    """Two chats resumed on one session: the second goes on under a new id with a notice, so each one's
    autosaves keep its own turns."""
    first = ChatSession(FakeEngine().enqueue(["a1"]), store=SessionStore(tmp_path))
    first.send("from first")
    first.autosave()
    saved = first.store.resolve("last")
    second = ChatSession(FakeEngine().enqueue(["b1"]), store=SessionStore(tmp_path))
    second.adopt(saved, session_id=saved.id, created=saved.created)
    assert second.session_id != saved.id
    assert any("open in another qwenchat" in n and second.session_id in n for n in second.observer.notices)
    second.send("from second")
    second.autosave()
    texts = {s.id: [m.content for m in s.conversation.messages] for s in SessionStore(tmp_path).list()}
    assert texts[saved.id] == ["from first", "a1"]
    assert texts[second.session_id] == ["from first", "a1", "from second", "b1"]


def test_warm_asks_the_engine_for_the_next_prompt_only_after_an_answer() -> None:
    """ChatSession.warm hands the engine the next prompt with stand-ins for the message not yet typed; with
    no answer to build on it does nothing, and an engine without warm is fine."""
    from qwenchat.chat.session import WARM_PROBES

    class Warmable(FakeEngine):
        def __init__(self) -> None:
            super().__init__()
            self.calls: list[list[GenerationRequest]] = []

        def warm(self, requests: list[GenerationRequest]) -> bool:
            self.calls.append(requests)
            return True

    engine = Warmable().enqueue(["an answer"])
    session = ChatSession(engine)
    assert session.warm() is False and engine.calls == []  # nothing said yet
    session.send("a question")
    assert session.warm() is True
    (requests,) = engine.calls
    assert [r.messages[-1]["content"] for r in requests] == list(WARM_PROBES)
    assert all(r.messages[:-1] == session.request().messages for r in requests)
    assert ChatSession(FakeEngine().enqueue(["x"])).warm() is False


class FingerprintedEngine(FakeEngine):
    """A fake engine that says what it runs on (the chat layer only reads it)."""

    def __init__(self, **fields) -> None:
        super().__init__()
        self.fields = {"engine": "fake", "dtype": "bfloat16", "threads": 4, **fields}

    def fingerprint(self) -> dict:
        return dict(self.fields)


def test_a_session_keeps_its_fingerprint_and_a_load_on_another_setup_says_so(tmp_path):
    engine = FingerprintedEngine()
    session = ChatSession(engine.enqueue(["hi there"]))
    session.send("hello")
    saved = session.save(tmp_path / "s.json")
    assert saved.fingerprint == engine.fields
    from qwenchat.conversation.store import load_file

    loaded = load_file(tmp_path / "s.json")
    assert loaded.fingerprint == engine.fields
    same = Recorder()
    ChatSession(FingerprintedEngine(), observer=same).adopt(loaded)
    assert not [e for e in same.events if e[0] == "notice"]
    other = Recorder()
    ChatSession(FingerprintedEngine(dtype="float32", threads=8), observer=other).adopt(loaded)
    notices = [e[1] for e in other.events if e[0] == "notice"]
    assert notices == [
        "this session was saved on another setup, so its answers may differ here: "
        "dtype: bfloat16 -> float32; threads: 4 -> 8"
    ]


@pytest.mark.parametrize(
    "fingerprint",
    [[1, 2], {"dtype": "bf16\x1b[2J"}, {"dtype": {"nested": 1}}, {f"k{i}": 1 for i in range(65)}],
    ids=["not-an-object", "control-chars", "nested", "too-many"],
)
def test_a_bad_saved_fingerprint_is_one_line(tmp_path, fingerprint):
    import json

    from qwenchat.conversation.store import load_file

    session = ChatSession(FakeEngine().enqueue(["ok"]))
    session.send("hi")
    path = tmp_path / "s.json"
    session.save(path)
    data = json.loads(path.read_text())
    data["fingerprint"] = fingerprint
    path.write_text(json.dumps(data))
    with pytest.raises(UserError, match="'fingerprint'"):
        load_file(path)
