"""Images to an OpenAI-compatible server: image_url content parts with base64 data URIs, checked in the
request body the scripted server received."""

from __future__ import annotations

import base64
import threading

import pytest

from qwenchat.chat.session import ChatSession
from qwenchat.engines.api import SupportsImages
from qwenchat.engines.openai.engine import OpenAIEngine
from qwenchat.images.load import read_image
from tests.support.scripted_server import Scripted, delta, sse, streams


@pytest.fixture
def server():
    s = Scripted()
    s.script = streams(sse(delta("a cat", "stop")), sse(b"[DONE]"))
    yield s
    s.close()


def test_images_go_as_content_parts_with_data_uris(server, images):
    engine = OpenAIEngine(server.url)
    engine.connect()
    assert isinstance(engine, SupportsImages) and engine.takes_images
    session = ChatSession(engine)
    a, jpeg = read_image(images["a"], "a.png"), read_image(images["jpeg"], "c.jpg")
    session.attach_images([a, jpeg])
    assert session.send("what is it?").text == "a cat"
    session.send("and then?")
    first, second = server.requests
    user = first["messages"][-1]
    assert user["role"] == "user" and isinstance(user["content"], list)
    kinds = [p["type"] for p in user["content"]]
    assert kinds == ["image_url", "image_url", "text"] and user["content"][2]["text"] == "what is it?"
    for part, path, mime in zip(
        user["content"], (images["a"], images["jpeg"]), ("png", "jpeg"), strict=False
    ):
        head, _, data = part["image_url"]["url"].partition(",")
        assert head == f"data:image/{mime};base64" and base64.b64decode(data) == path.read_bytes()
    assert second["messages"][1]["content"][0]["type"] == "image_url"  # the history keeps them
    assert second["messages"][-1] == {"role": "user", "content": "and then?"}
    assert all("images" not in m for m in second["messages"])


def test_an_image_that_changed_before_the_turn_gets_one_line(server, images):
    from tests.images.conftest import make_image

    engine = OpenAIEngine(server.url)
    engine.connect()
    ref = read_image(images["b"], "b.png")
    make_image(images["b"], 50)
    from qwenchat.engines.api import GenerationRequest

    request = GenerationRequest(messages=[{"role": "user", "content": "x", "images": [ref]}])
    chunks = list(engine.stream(request, threading.Event()))
    assert chunks[-1].finish_reason == "error" and "changed since it was attached" in chunks[-1].error
    assert server.requests == []  # nothing was sent
