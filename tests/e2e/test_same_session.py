"""One session, unchanged, across the three kinds of engine: the demo model in-process (transformers), its
GGUF through llama.cpp, and a real OpenAI-compatible server (llama_cpp.server) on 127.0.0.1.

Needs the llamacpp and serve-test extras (CI installs them); skips with the reason otherwise.
"""

from __future__ import annotations

import pytest

from qwenchat.chat.session import ChatSession
from qwenchat.conversation.store import load_file
from qwenchat.settings import Settings
from qwenchat.ui.repl import Repl


def make_app(engine, out) -> Repl:
    return Repl(ChatSession(engine, settings=Settings(engine.default_settings())), out)


def assistant_turns(app: Repl) -> list[str]:
    return [m.content for m in app.session.conversation.messages if m.role == "assistant"]


def test_one_session_moves_between_engines(demo_loaded, real_server, out, tmp_path) -> None:
    pytest.importorskip("llama_cpp", reason="needs the llamacpp extra: pip install 'qwenchat[llamacpp]'")
    from qwenchat.engines.llamacpp.engine import LlamaCppEngine
    from qwenchat.engines.openai.engine import OpenAIEngine
    from qwenchat.engines.transformers.engine import TransformersEngine
    from qwenchat.models.demo import ensure_gguf

    saved = tmp_path / "chat.json"

    # 1. In-process transformers: a system prompt, settings, one exchange, saved.
    app = make_app(TransformersEngine(demo_loaded.model, demo_loaded.tokenizer, demo_loaded.name), out)
    app.handle_line(":system You are a terse assistant. Answer in one short line.")
    app.handle_line(":conf do_sample=False max_new_tokens=12")
    app.handle_line("Name one prime number.")
    app.handle_line(f":save {saved}")
    first = assistant_turns(app)
    assert len(first) == 1 and first[0].strip()

    # 2. The same file in the llama.cpp engine: the settings come along, a second exchange, :retry, saved.
    llama = LlamaCppEngine(ensure_gguf(), n_ctx=2048, n_threads=1)
    try:
        app = make_app(llama, out)
        app.handle_line(f":load {saved}")
        effective = app.session.settings.effective()
        assert effective["max_new_tokens"] == 12 and effective["do_sample"] is False
        app.handle_line("Name another one.")
        app.handle_line(":retry")  # greedy: the same answer again, from the prefix cache
        assert app.session.last_stats is not None and app.session.last_stats.reused_tokens > 0
        app.handle_line(f":save! {saved}")
        second = assistant_turns(app)
        assert second[0] == first[0] and len(second) == 2 and second[1].strip()
    finally:
        llama.llm.close()

    # 3. The same file against the server: :undo, a different question, and it still ends as one session.
    remote = OpenAIEngine(real_server.url, timeout=60)
    remote.connect()
    app = make_app(remote, out)
    app.handle_line(f":load {saved}")
    app.handle_line(":undo")
    app.handle_line("Name a third one.")
    app.handle_line(f":save! {saved}")
    third = assistant_turns(app)
    assert third[0] == first[0] and len(third) == 2 and third[1].strip()

    on_disk = load_file(saved)
    assert on_disk.conversation.system == "You are a terse assistant. Answer in one short line."
    roles = [m.role for m in on_disk.conversation.messages]
    assert roles == ["user", "assistant", "user", "assistant"]
    assert [m.content for m in on_disk.conversation.messages if m.role == "user"] == [
        "Name one prime number.",
        "Name a third one.",
    ]
    assert not any(m.interrupted for m in on_disk.conversation.messages)
    assert on_disk.settings == {"do_sample": False, "max_new_tokens": 12}
    transcript = out.buf.getvalue()
    assert "error" not in transcript.lower() and "Traceback" not in transcript
