"""JSON-schema answers with the real demo model: in-process (transformers + llguidance), llama.cpp's grammar,
and a server's response_format (the real llama_cpp.server, and a scripted one that refuses it)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from qwenchat.chat.session import ChatSession
from qwenchat.engines.api import GenerationRequest
from qwenchat.engines.openai.engine import OpenAIEngine
from qwenchat.structured.check import validate_answer
from qwenchat.structured.schema import load_schema
from tests.support.scripted_server import Scripted, delta, json_reply, sse, streams

SCHEMAS = Path(__file__).parents[1] / "schemas"
PROMPTS = {
    "person": "Invent a user of a wiki as JSON: name, age, role.",
    "todos": "Give me a short to-do list as JSON.",
    "order": "Invent a shop order as JSON with the customer's name and address.",
}
SAMPLED = {"do_sample": True, "temperature": 1.0, "top_p": 0.95, "max_new_tokens": 96}


@pytest.fixture(scope="module")
def engine(demo_loaded):
    from qwenchat.engines.transformers.engine import TransformersEngine

    return TransformersEngine(demo_loaded.model, demo_loaded.tokenizer, demo_loaded.name)


def _session(engine: Any, name: str) -> ChatSession:
    session = ChatSession(engine)
    session.settings.update(SAMPLED)
    session.json_schema = load_schema(SCHEMAS / f"{name}.json")
    return session


@pytest.mark.parametrize("name", sorted(PROMPTS))
def test_demo_answers_parse_and_validate(engine, name):
    """10 sampled answers per schema, each seed different: every one parses and validates (the tiny model's
    random weights test the mask on far stranger tokens, in the fast tier)."""
    session = _session(engine, name)
    session.settings.seed = 0
    answers = [session.send(PROMPTS[name])]
    for seed in range(1, 10):
        answers.append(session.retry(seed))
    for r in answers:
        assert r.finish_reason == "stop", r.text
        assert r.json_check is not None and r.json_check[0], (r.json_check, r.text)
    assert len({r.text for r in answers}) >= 3  # sampled with 10 seeds: not one answer repeated


def test_demo_prefill_and_continue_stay_in_the_schema(engine):
    session = _session(engine, "person")
    session.prefill = '{"name": "Zed'
    r = session.send(PROMPTS["person"])
    answer = session.conversation.messages[-1].content
    assert answer.startswith('{"name": "Zed') and r.json_check[0], (r.json_check, answer)
    assert session.prefill is None
    # Cut short, then continued: the matcher takes up the answer so far.
    session.settings.update({"max_new_tokens": 4})
    r = session.retry(3)
    assert r.finish_reason == "length" and not r.json_check[0]
    session.settings.update({"max_new_tokens": 96})
    r = session.continue_()
    assert r.json_check[0], (r.json_check, session.conversation.messages[-1].content)


def test_llamacpp_grammar_answers_validate(demo_gguf_path):
    from qwenchat.engines.llamacpp.engine import LlamaCppEngine

    llama = LlamaCppEngine(str(demo_gguf_path), n_ctx=1024)
    for name in sorted(PROMPTS):
        session = ChatSession(llama)
        session.settings.update(SAMPLED)
        session.json_schema = load_schema(SCHEMAS / f"{name}.json")
        session.settings.seed = 0
        results = [session.send(PROMPTS[name]), session.retry(1), session.retry(2)]
        for r in results:
            assert r.json_check[0], (name, r.json_check, r.text)
    session.prefill = "{"
    r = session.send("again")
    assert r.finish_reason == "error" and "cannot continue a JSON answer" in r.error


def test_real_server_answers_with_the_schema(real_server):
    """llama_cpp.server takes response_format as json_object + schema: after its refusal of the OpenAI
    json_schema form, the engine sends that, and the answers validate."""
    engine = OpenAIEngine(real_server.url, model="demo")
    schema = load_schema(SCHEMAS / "person.json")
    for seed in (1, 2):
        req = GenerationRequest(
            [{"role": "user", "content": PROMPTS["person"]}], dict(SAMPLED), seed=seed, json_schema=schema
        )
        chunks = list(engine.stream(req, threading.Event()))
        assert chunks[-1].error is None, chunks[-1].error
        ok, line = validate_answer("".join(c.text for c in chunks), schema)
        assert ok, line
    assert engine.schema_form == "json_object"


@pytest.fixture
def fake():
    server = Scripted()
    yield server
    server.close()


def _request(schema: dict) -> GenerationRequest:
    return GenerationRequest([{"role": "user", "content": "hi"}], {"max_new_tokens": 8}, json_schema=schema)


def test_server_gets_response_format_json_schema(fake):
    fake.script = streams(sse(delta('{"a": 1}', "stop")), sse(b"[DONE]"))
    schema = {"type": "object"}
    chunks = list(OpenAIEngine(fake.url, model="m").stream(_request(schema), threading.Event()))
    assert chunks[-1].error is None
    assert fake.requests[0]["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "answer", "schema": schema, "strict": True},
    }


def test_server_refusing_the_schema_is_one_line(fake):
    def script(h, body):
        json_reply(h, 400, {"error": {"message": "response_format is not supported"}})

    fake.script = script
    engine = OpenAIEngine(fake.url, model="m")
    chunks = list(engine.stream(_request({"type": "object"}), threading.Event()))
    end = chunks[-1]
    assert end.finish_reason == "error"
    refused = "the server refused the JSON schema (response_format): response_format is not supported"
    assert end.error == refused
    forms = [r["response_format"]["type"] for r in fake.requests]
    assert forms == ["json_schema", "json_object"]  # never retried without it: no unconstrained answer


# -- the token mask on a tiny random-weight model: what the constraint guarantees, whatever the weights ----
@pytest.fixture(scope="module")
def tiny_engine(tiny_model):
    from qwenchat.engines.transformers.engine import TransformersEngine

    model, tok = tiny_model
    return TransformersEngine(model, tok, "tiny")


def test_tiny_model_answers_are_bounded_valid_json_and_reproducible(tiny_engine):
    """Random weights pick among the allowed tokens only: every answer to a schema whose values are
    bounded is valid JSON that ends, and the same seed gives the same answer."""
    session = _session(tiny_engine, "person")
    session.settings.update({"max_new_tokens": 120})
    session.settings.seed = 5
    first = session.send("x")
    assert first.finish_reason == "stop" and first.json_check[0], (first.json_check, first.text)
    texts = {first.text}
    for seed in (6, 7):
        r = session.retry(seed)
        assert r.finish_reason == "stop" and r.json_check[0], (r.json_check, r.text)
        texts.add(r.text)
    assert len(texts) == 3
    assert session.retry(5).text == first.text


def test_tiny_model_prefill_is_taken_up_by_the_matcher(tiny_engine):
    session = _session(tiny_engine, "person")
    session.settings.update({"max_new_tokens": 120})
    session.prefill = '{"name": "Zed'
    r = session.send("x")
    answer = session.conversation.messages[-1].content
    assert answer.startswith('{"name": "Zed') and r.json_check[0], (r.json_check, answer)
    session.prefill = '{"nope": '  # not the start of a valid answer: refused, nothing kept
    before = list(session.conversation.messages)
    r = session.send("y")
    assert r.finish_reason == "error" and "is not JSON for the schema" in r.error
    assert session.conversation.messages == before and session.prefill == '{"nope": '


def test_tiny_model_continue_after_a_cut_stays_in_the_schema(tiny_engine):
    """An answer cut by max_new_tokens, then :continue: the matcher takes up the answer so far (tokenized
    again) and the whole answer validates."""
    session = _session(tiny_engine, "order")
    session.settings.update({"max_new_tokens": 7})
    session.settings.seed = 11
    r = session.send("x")
    assert r.finish_reason == "length" and not r.json_check[0]
    session.settings.update({"max_new_tokens": 200})
    r = session.continue_()
    answer = session.conversation.messages[-1].content
    assert r.finish_reason == "stop" and r.json_check[0], (r.json_check, answer)
