"""What each engine declares it can do (engines/api.py's capability protocols), asked with isinstance as the
chat asks it; and close(), which `:model` calls to release the engine it replaces."""

from __future__ import annotations

import threading

from qwenchat.chat.switch import release
from qwenchat.engines.api import (
    SupportsAdapters,
    SupportsClose,
    SupportsCompiledDecode,
    SupportsDetokenize,
    SupportsSchemaPreparation,
    SupportsScore,
    SupportsSettle,
    SupportsTemplateVariables,
    SupportsThinkingBudget,
    SupportsWarm,
)
from qwenchat.engines.openai.engine import OpenAIEngine
from tests.support.fakes import FakeEngine

ALL = (
    SupportsWarm,
    SupportsSettle,
    SupportsClose,
    SupportsTemplateVariables,
    SupportsDetokenize,
    SupportsThinkingBudget,
    SupportsAdapters,
    SupportsSchemaPreparation,
    SupportsCompiledDecode,
    SupportsScore,
)


def declared(engine: object) -> set[str]:
    return {p.__name__ for p in ALL if isinstance(engine, p)}


def test_a_fake_and_a_server_declare_what_they_have():
    assert declared(FakeEngine()) == set()
    remote = OpenAIEngine("http://127.0.0.1:9/v1", model="m")
    # the server applies the template and counts tokens; it may score (ScoreError when it sends no prompt
    # logprobs)
    assert declared(remote) == {"SupportsClose", "SupportsScore"}
    remote.close()
    remote.close()  # twice is harmless: :model may release an engine whose load failed half-way


def test_the_transformers_engine_declares_everything_and_closes_its_worker(tiny_model):
    from qwenchat.engines.transformers.engine import TransformersEngine

    model, tok = tiny_model
    engine = TransformersEngine(model, tok, "tiny")
    assert declared(engine) == {p.__name__ for p in ALL}
    assert engine.supports_thinking_budget and not engine.compiled and engine.adapters() == []
    assert engine.schema_tokenizer_ready() in (True, False)
    chunks = list(engine.stream(_request(), threading.Event()))
    assert chunks[-1].finish_reason in ("stop", "length")
    worker = engine._turns._worker._thread
    assert worker is not None and worker.is_alive()
    release(engine)  # what :model does with the engine it replaces
    worker.join(timeout=10)
    assert not worker.is_alive()


def test_the_llamacpp_engine_declares_what_it_does_in_process(llamacpp_engine):
    assert declared(llamacpp_engine) == {
        "SupportsWarm",
        "SupportsSettle",
        "SupportsClose",
        "SupportsTemplateVariables",
        "SupportsDetokenize",
        "SupportsThinkingBudget",
        "SupportsScore",
    }


def _request():
    from qwenchat.engines.api import GenerationRequest

    return GenerationRequest([{"role": "user", "content": "hi"}], {"do_sample": False, "max_new_tokens": 3})
