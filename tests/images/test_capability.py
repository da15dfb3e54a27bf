"""Who declares SupportsImages: a vision engine and a server; a text model's engine and the fake do not."""

from __future__ import annotations

from qwenchat.engines.api import SupportsImages
from qwenchat.engines.openai.engine import OpenAIEngine
from tests.images.conftest import vision_engine
from tests.support.fakes import FakeEngine


def test_only_engines_that_take_images_declare_it(tiny_model, tiny_vl):
    from qwenchat.engines.transformers.engine import TransformersEngine

    model, tok = tiny_model
    assert not isinstance(TransformersEngine(model, tok, "tiny"), SupportsImages)
    assert not isinstance(FakeEngine(), SupportsImages)
    assert isinstance(vision_engine(tiny_vl), SupportsImages)
    remote = OpenAIEngine("http://127.0.0.1:9/v1", model="m")
    assert isinstance(remote, SupportsImages) and remote.takes_images
    remote.close()
