"""--mmproj for the llama.cpp engine: what can be tested without projector weights (none are available
offline) and with a llama-cpp-python built without its multimodal library: the flag's checks, the choice of
handler, the one line when the library is missing, the refusal without a projector, and the turn's wiring
through a stand-in for llama-cpp-python's chat completion."""

from __future__ import annotations

import base64
import threading

import pytest

from qwenchat.chat.images import refuse_unless_images
from qwenchat.engines.api import EngineError, GenerationRequest
from qwenchat.engines.llamacpp import vision
from qwenchat.errors import ChatError
from qwenchat.images.load import read_image


def test_the_projector_file_is_checked_before_anything_loads(tmp_path):
    with pytest.raises(EngineError, match="no such file"):
        vision.check_mmproj(str(tmp_path / "mmproj.gguf"))
    other = tmp_path / "mmproj.bin"
    other.write_bytes(b"x")
    with pytest.raises(EngineError, match="a projector is a .gguf file"):
        vision.check_mmproj(str(other))


@pytest.mark.parametrize(
    "name,handler",
    [
        ("Qwen2.5-VL-7B-Instruct-Q4_K_M.gguf", "Qwen25VLChatHandler"),
        ("qwen2-vl-2b-instruct-q8_0.gguf", "Qwen25VLChatHandler"),
        ("MiniCPM-V-2_6-Q4.gguf", "MiniCPMv26ChatHandler"),
        ("llava-v1.6-mistral-7b.Q4.gguf", "Llava16ChatHandler"),
        ("llava-v1.5-7b-Q4_K.gguf", "Llava15ChatHandler"),
    ],
)
def test_the_handler_follows_the_model(name, handler):
    assert vision.handler_name(name) == handler


def test_a_projector_that_cannot_load_is_one_line(tmp_path):
    pytest.importorskip("llama_cpp", reason="needs the llamacpp extra")
    junk = tmp_path / "mmproj-x.gguf"
    junk.write_bytes(b"GGUF not really")
    with pytest.raises(EngineError) as err:
        vision.load_projector(str(junk), "qwen2.5-vl-3b.gguf")
    assert "\n" not in str(err.value)  # here: the library is missing (NO_MTMD); elsewhere: the file is junk


def test_without_a_projector_a_gguf_refuses_images(llamacpp_engine):
    assert not llamacpp_engine.takes_images
    with pytest.raises(ChatError, match="--mmproj FILE"):
        refuse_unless_images(llamacpp_engine)


class FakeLlama:
    """Stands in for llama_cpp.Llama: records the chat completion it is asked for, streams an answer."""

    def __init__(self) -> None:
        self.asked: dict = {}
        self.chat_handler = None

    def create_chat_completion(self, **kwargs):
        self.asked = kwargs
        for word in ["a ", "red ", "square"]:
            yield {"choices": [{"delta": {"content": word}, "finish_reason": None}]}
        yield {"choices": [{"delta": {}, "finish_reason": "stop"}]}


def test_a_turn_with_images_goes_to_the_handler_as_content_parts(images):
    llm, handler = FakeLlama(), object()
    ref = read_image(images["a"], "a.png")
    request = GenerationRequest(messages=[{"role": "user", "content": "what?", "images": [ref]}], seed=3)
    chunks = list(vision.stream_with_projector(llm, handler, request, {"seed": 3}, threading.Event()))
    assert "".join(c.text for c in chunks) == "a red square" and chunks[-1].finish_reason == "stop"
    assert llm.chat_handler is handler and llm.asked["stream"] and llm.asked["seed"] == 3
    (user,) = llm.asked["messages"]
    url = user["content"][0]["image_url"]["url"]
    assert base64.b64decode(url.split(",", 1)[1]) == images["a"].read_bytes()
    assert user["content"][1] == {"type": "text", "text": "what?"}
    cancel = threading.Event()
    cancel.set()
    stopped = list(vision.stream_with_projector(FakeLlama(), handler, request, {}, cancel))
    assert stopped[-1].finish_reason == "interrupted"
