""":image, --image's path, the attachment line and thumbnail, the offer for a pasted image path, and sessions
with images (save, load, a changed or vanished file, :export), through the REPL with the fake engine (the
command and session layer; the real engines' side is in test_vision_engine.py)."""

from __future__ import annotations

import io
from typing import Any

import pytest

from qwenchat.chat.session import ChatSession
from qwenchat.conversation.export import to_markdown
from qwenchat.conversation.file import dump_session, parse_session
from qwenchat.conversation.store import SessionStore, load_file
from qwenchat.engines.api import SupportsImages
from qwenchat.images.load import read_image
from qwenchat.ui.render import Renderer
from qwenchat.ui.terminal import make_console
from tests.images.conftest import make_image
from tests.support.fakes import FakeEngine


class FakeImageEngine(FakeEngine):
    """The fake engine, taking images (each one 42 tokens)."""

    takes_images = True

    def image_tokens(self, image: Any, settings: dict[str, Any]) -> int | None:
        return 42


@pytest.fixture
def app(out, tmp_path, make_repl):
    return make_repl(FakeImageEngine(), out, store=SessionStore(tmp_path / "sessions"))


def said(app) -> str:
    return app.renderer.buf.getvalue()


def test_image_goes_with_the_next_message_only(app, images):
    assert isinstance(app.session.engine, SupportsImages)
    app.handle_line(f":image {images['a']} {images['jpeg']}")
    text = said(app)
    assert "image " in text and "80x60 PNG, 42 tokens)" in text and "80x60 JPEG" in text
    assert "▀" not in text  # a plain console (a pipe) gets no thumbnail
    app.session.engine.enqueue(["one", "two"])
    app.handle_line("what is this?")
    first = app.session.engine.requests[-1].messages[-1]
    assert first["content"] == "what is this?" and [r.label for r in first["images"]] == [
        str(images["a"]),
        str(images["jpeg"]),
    ]
    assert [r.format for r in app.session.conversation.messages[0].images] == ["PNG", "JPEG"]
    app.handle_line("and now?")
    assert "images" not in app.session.engine.requests[-1].messages[-1]


def test_a_bad_image_adds_none(app, images, tmp_path):
    bad = tmp_path / "notes.png"
    bad.write_text("text, not an image")
    app.handle_line(f":image {images['a']} {bad}")
    assert "error: notes.png" in said(app).replace(str(tmp_path) + "/", "")
    assert app.session.images == []


def test_a_text_only_engine_refuses_images_in_one_line(out, make_repl, images):
    app = make_repl(FakeEngine(), out)
    app.handle_line(f":image {images['a']}")
    lines = [line for line in said(app).splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "takes text only" in lines[0]
    assert app.session.images == []


def test_an_image_path_alone_is_offered_not_sent(app, images):
    app.handle_line(str(images["a"]))
    assert app.session.engine.requests == [] and not app.session.conversation.messages
    assert f":image {images['a']}" in said(app)
    app.session.engine.enqueue(["ok"])
    app.handle_line(f"see {images['a']}")  # with other words it is text
    assert app.session.conversation.messages[0].content == f"see {images['a']}"


@pytest.mark.parametrize("reply", ["y", "n", KeyboardInterrupt])
def test_at_the_terminal_an_image_path_alone_is_asked_about(app, images, reply):
    asked: list[str] = []

    def ask(prompt: str) -> str:
        asked.append(prompt)
        if reply is KeyboardInterrupt:
            raise KeyboardInterrupt
        return reply

    app.ask = ask
    app.handle_line(str(images["a"]))
    assert asked == ["that is an image file: attach it to your next message? [y/N] "]
    assert app.session.engine.requests == [] and not app.session.conversation.messages  # nothing sent
    assert [r.label for r in app.session.images] == ([str(images["a"])] if reply == "y" else [])


def test_a_text_only_engine_gets_an_image_path_as_text(out, make_repl, images):
    app = make_repl(FakeEngine().enqueue(["a path"]), out)
    app.ask = lambda prompt: pytest.fail("a text model is not asked about images")
    app.handle_line(str(images["a"]))
    assert app.session.conversation.messages[0].content == str(images["a"])


class FakeTty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_colour_terminal_gets_a_thumbnail_and_no_color_none(images, monkeypatch):
    monkeypatch.setenv("COLORTERM", "truecolor")
    monkeypatch.delenv("NO_COLOR", raising=False)
    ref = read_image(images["a"], "a.png")
    for plain, expect in ((None, True), (True, False)):
        console = make_console(FakeTty(), plain=plain, width=80, height=25)
        Renderer(console).images_attached([ref], [42])
        shown = console.file.getvalue()
        assert "80x60 PNG, 42 tokens" in shown
        assert ("▀" in shown) is expect
        assert ("\x1b[38;2;" in shown) is expect  # truecolour cells


def _saved_with_image(images, tmp_path) -> tuple[Any, str]:
    session = ChatSession(FakeImageEngine().enqueue(["a cat"]))
    session.attach_images([read_image(images["a"], "a.png")])
    session.send("what is it?")
    path = tmp_path / "s.json"
    session.save(path)
    return session, path


def test_a_session_keeps_each_images_record_not_its_bytes(images, tmp_path):
    _, path = _saved_with_image(images, tmp_path)
    text = path.read_text()
    assert '"sha256"' in text and '"width": 80' in text and len(text) < 3000  # no bytes in it
    loaded = load_file(path)
    assert loaded.conversation.messages[0].images[0].path == str(images["a"])


@pytest.mark.parametrize("what", ["changed", "gone"])
def test_loading_a_session_whose_image_changed_or_vanished_goes_on_without_it(images, tmp_path, what):
    _, path = _saved_with_image(images, tmp_path)
    if what == "changed":
        make_image(images["a"], 77)
    else:
        images["a"].unlink()
    notices: list[str] = []
    fresh = ChatSession(FakeImageEngine().enqueue(["next"]))
    fresh.observer.notice = notices.append
    fresh.adopt(load_file(path))
    assert len(notices) == 1 and "a.png of message 1" in notices[0] and what in notices[0]
    message = fresh.conversation.messages[0]
    assert message.images == () and message.missing_images[0].label == "a.png"
    fresh.send("go on")
    assert all("images" not in m for m in fresh.engine.requests[-1].messages)
    again = tmp_path / "again.json"
    fresh.save(again)  # the record stays in the file
    assert load_file(again).conversation.messages[0].missing_images[0].sha256


def test_a_session_with_images_refused_by_a_text_engine(images, tmp_path):
    _, path = _saved_with_image(images, tmp_path)
    text_only = ChatSession(FakeEngine().enqueue(["x"]))
    text_only.adopt(load_file(path))
    from qwenchat.errors import ChatError

    with pytest.raises(ChatError, match="this conversation has images"):
        text_only.send("go on")


def test_old_session_files_without_images_still_load():
    doc = (
        '{"format": "qwenchat-session", "version": 1, "id": "old", "created": "2025-01-01T00:00:00+00:00", '
        '"updated": "2025-01-01T00:00:00+00:00", "model": "m", "settings": {}, "seed": 1, "conversation": '
        '{"version": 1, "system": null, "messages": [{"role": "user", "content": "hi"}]}}'
    )
    saved = parse_session(doc)
    assert saved.conversation.messages[0].images == ()
    text = dump_session(saved.conversation, model="m", settings_overrides={}, seed=1, session_id="old")
    assert "images" not in text


def test_export_links_the_images(images, tmp_path):
    session, _ = _saved_with_image(images, tmp_path)
    md = to_markdown(session.conversation, model="m")
    assert f"({images['a'].as_uri()})" in md and "![a.png]" in md


def test_tokens_counts_the_image_tokens(app, images):
    app.handle_line(f":image {images['a']}")
    app.handle_line(":tokens")
    assert "of them, 42 image tokens: 1 image, 1 waiting for your next message" in said(app)


@pytest.mark.parametrize("reply,attached", [("y", True), ("", False), (KeyboardInterrupt, False)])
def test_at_the_prompt_a_pasted_image_path_is_asked_about(app, images, reply, attached):
    asked: list[str] = []

    def ask(prompt: str) -> str:
        asked.append(prompt)
        if reply is KeyboardInterrupt:
            raise KeyboardInterrupt
        return reply

    app.ask = ask
    app.handle_line(f"'{images['a']}'")  # as a terminal quotes a dropped file
    assert asked and "attach it" in asked[0]
    assert [r.label for r in app.session.images] == ([str(images["a"])] if attached else [])
    assert app.session.engine.requests == []  # nothing was sent either way
