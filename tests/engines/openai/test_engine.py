"""The OpenAI-compatible engine against a scripted SSE server (exact protocol cases, fast) and, when the
`llamacpp` + `server` extras are installed, against a real llama.cpp server on the demo GGUF."""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from typing import Any

import pytest

from qwenchat.engines.api import Chunk, EngineError, GenerationRequest
from qwenchat.engines.openai.engine import OpenAIEngine
from qwenchat.engines.openai.events import server_error_message
from qwenchat.engines.openai.http import redact_url
from qwenchat.settings import ConfigError
from tests.support.real_server import RealServer, free_port
from tests.support.scripted_server import Scripted, delta, json_reply, sse, start_stream, streams

GREEDY = {"do_sample": False, "max_new_tokens": 16}
MESSAGES = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Say hi."}]


def run(
    engine: OpenAIEngine,
    settings: dict[str, Any] | None = None,
    cancel: threading.Event | None = None,
    **kw: Any,
) -> list[Chunk]:
    req = GenerationRequest(
        messages=list(MESSAGES), settings=dict(GREEDY if settings is None else settings), **kw
    )
    return list(engine.stream(req, cancel or threading.Event()))


def text_of(chunks: list[Chunk]) -> str:
    return "".join(c.text for c in chunks)


def final(chunks: list[Chunk]) -> Chunk:
    assert chunks and chunks[-1].finish_reason is not None
    assert all(c.finish_reason is None for c in chunks[:-1])
    return chunks[-1]


# -- a scripted server (tests/support/scripted_server.py) -----------------------------------------------
@pytest.fixture
def fake() -> Iterator[Scripted]:
    server = Scripted()
    yield server
    server.close()


USAGE = {
    "prompt_tokens": 21,
    "completion_tokens": 3,
    "total_tokens": 24,
    "prompt_tokens_details": {"cached_tokens": 8},
}


# -- protocol cases -------------------------------------------------------------------------------
def test_streamed_turn_text_stats_and_request_body(fake: Scripted) -> None:
    fake.script = streams(
        sse(delta("Hel")),
        sse(delta("lo")),
        sse(delta("!", "stop")),
        sse({"object": "chat.completion.chunk", "choices": [], "usage": USAGE}),
        sse(b"[DONE]"),
    )
    engine = OpenAIEngine(fake.url, model="served-model", api_key="sk-test")
    settings = {**GREEDY, "stop_strings": "END", "top_k": 20, "max_new_tokens": 16}
    chunks = run(engine, settings, seed=7)
    assert text_of(chunks) == "Hello!"
    end = final(chunks)
    assert end.finish_reason == "stop" and end.error is None
    st = end.stats
    assert (st.prompt_tokens, st.generated_tokens, st.reused_tokens, st.prefilled_tokens) == (21, 3, 8, 13)
    assert st.finish_reason == "stop" and st.ttft_s > 0 and st.total_s >= st.ttft_s
    body = fake.requests[0]
    assert body["model"] == "served-model" and body["messages"] == MESSAGES and body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}
    assert (
        body["temperature"] == 0.0
        and body["max_tokens"] == 16
        and body["seed"] == 7
        and body["stop"] == ["END"]
    )
    assert "top_k" not in body and "top_p" not in body  # greedy: sampling knobs are meaningless
    assert "add_generation_prompt" not in body
    assert fake.headers[0]["Authorization"] == "Bearer sk-test"


def test_sampling_settings_and_extra_fields(fake: Scripted) -> None:
    fake.script = streams(sse(delta("x", "stop")), sse(b"[DONE]"))
    engine = OpenAIEngine(fake.url, model="m")
    settings = {
        "do_sample": True,
        "temperature": 0.7,
        "top_p": 0.8,
        "top_k": 20,
        "min_p": 0.05,
        "repetition_penalty": 1.1,
        "max_new_tokens": 32,
        "stop_strings": ["a", "b"],
        "typical_p": 0.9,
        "num_beams": 1,
    }
    run(engine, settings)
    body = fake.requests[0]
    assert (body["temperature"], body["top_p"], body["top_k"], body["min_p"]) == (0.7, 0.8, 20, 0.05)
    assert body["repetition_penalty"] == body["repeat_penalty"] == 1.1
    assert body["stop"] == ["a", "b"] and body["max_tokens"] == 32
    # Refused up front by the engine's schema, with the reason (num_beams too: key-based, whatever its value).
    schema = engine.settings_schema()
    assert schema.split(settings)[1] == ["num_beams", "typical_p"]
    with pytest.raises(ConfigError, match="typical_p: an OpenAI-compatible server cannot honour it"):
        schema.check("typical_p", 0.9)
    assert "typical_p" not in schema.words() and "top_k" in schema.words()


def test_temperature_zero_is_greedy(fake: Scripted) -> None:
    fake.script = streams(sse(delta("x", "stop")), sse(b"[DONE]"))
    run(OpenAIEngine(fake.url, model="m"), {"temperature": 0, "top_p": 0.5, "do_sample": True})
    assert fake.requests[0]["temperature"] == 0.0 and "top_p" not in fake.requests[0]


def test_reasoning_content_is_wrapped_in_think_tags(fake: Scripted) -> None:
    fake.script = streams(
        sse(delta(None, reasoning_content="Let me ")),
        sse(delta(None, reasoning_content="think.")),
        sse(delta("Answer", "stop")),
        sse(b"[DONE]"),
    )
    chunks = run(OpenAIEngine(fake.url, model="m"))
    assert text_of(chunks) == "<think>Let me think.</think>\n\nAnswer"
    assert final(chunks).stats.generated_tokens == 3  # no usage sent: counted deltas


def test_reasoning_only_answer_still_closes_the_block(fake: Scripted) -> None:
    fake.script = streams(
        sse(delta(None, reasoning_content="hmm")),
        sse(delta(None, None)),
        sse(delta("", "length")),
        sse(b"[DONE]"),
    )
    chunks = run(OpenAIEngine(fake.url, model="m"))
    assert text_of(chunks) == "<think>hmm</think>"
    assert final(chunks).finish_reason == "length"


def test_finish_reason_length(fake: Scripted) -> None:
    fake.script = streams(sse(delta("a")), sse(delta("b", "length")), sse(b"[DONE]"))
    end = final(run(OpenAIEngine(fake.url, model="m")))
    assert end.finish_reason == "length" and end.stats.finish_reason == "length"


def test_500_with_json_error_body_is_one_line(fake: Scripted) -> None:
    fake.script = lambda h, b: json_reply(
        h, 500, {"error": {"message": "CUDA out of memory\nat line 3", "type": "InternalServerError"}}
    )
    end = final(run(OpenAIEngine(fake.url, model="m")))
    assert end.finish_reason == "error" and end.stats.finish_reason == "error"
    assert end.error == "the server answered 500 Internal Server Error: CUDA out of memory at line 3"


def test_wrong_model_gets_the_servers_404_message(fake: Scripted) -> None:
    vllm_404 = {
        "object": "error",
        "message": "The model `nope` does not exist.",
        "type": "NotFoundError",
        "param": None,
        "code": 404,
    }
    fake.script = lambda h, b: json_reply(h, 404, vllm_404)
    end = final(run(OpenAIEngine(fake.url, model="nope")))
    assert end.finish_reason == "error"
    assert end.error == "the server answered 404 Not Found: The model `nope` does not exist."


def test_stream_ending_without_done_or_finish_is_an_error(fake: Scripted) -> None:
    fake.script = streams(sse(delta("partial")))
    chunks = run(OpenAIEngine(fake.url, model="m"))
    assert text_of(chunks) == "partial"
    end = final(chunks)
    assert end.finish_reason == "error" and "ended the stream before the answer was complete" in end.error


def test_stream_with_finish_reason_but_no_done_is_complete(fake: Scripted) -> None:
    fake.script = streams(sse(delta("all", "stop")))
    assert final(run(OpenAIEngine(fake.url, model="m"))).finish_reason == "stop"


def test_error_event_mid_stream(fake: Scripted) -> None:
    fake.script = streams(sse(delta("a")), sse({"error": {"message": "engine died", "code": 500}}))
    end = final(run(OpenAIEngine(fake.url, model="m")))
    assert end.finish_reason == "error" and end.error == "the server reported an error: engine died"


def test_sse_details_comments_multiline_crlf(fake: Scripted) -> None:
    one = json.dumps(delta("a"))
    fake.script = streams(
        b": keep-alive\r\n\r\n",
        b"event: message\r\nid: 1\r\ndata: " + one.encode() + b"\r\n\r\n",
        b'data: {"object": "chat.completion.chunk",\ndata: "choices": [{"delta": {"content": "b"},'
        b' "finish_reason": "stop"}]}\n\n',
        b"data:[DONE]\n\n",
    )
    chunks = run(OpenAIEngine(fake.url, model="m"))
    assert text_of(chunks) == "ab" and final(chunks).finish_reason == "stop"


def test_connection_dropped_mid_answer(fake: Scripted) -> None:
    def script(h: BaseHTTPRequestHandler, body: dict[str, Any]) -> None:
        start_stream(h)
        h.wfile.write(sse(delta("a")))
        h.wfile.flush()
        h.connection.shutdown(socket.SHUT_RDWR)

    fake.script = script
    chunks = run(OpenAIEngine(fake.url, model="m"))
    end = final(chunks)
    assert text_of(chunks) == "a" and end.finish_reason == "error" and "\n" not in end.error


def test_connection_closed_before_answering(fake: Scripted) -> None:
    def script(h: BaseHTTPRequestHandler, body: dict[str, Any]) -> None:
        h.connection.shutdown(socket.SHUT_RDWR)

    fake.script = script
    end = final(run(OpenAIEngine(fake.url, model="m")))
    port = fake.server.server_address[1]
    assert end.error == f"the server at 127.0.0.1:{port} closed the connection before answering"


def test_non_streaming_json_answer_is_accepted(fake: Scripted) -> None:
    completion = {
        "object": "chat.completion",
        "usage": USAGE,
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": "whole"}, "finish_reason": "stop"}
        ],
    }
    fake.script = lambda h, b: json_reply(h, 200, completion)
    chunks = run(OpenAIEngine(fake.url, model="m"))
    assert text_of(chunks) == "whole" and final(chunks).finish_reason == "stop"
    assert final(chunks).stats.prompt_tokens == 21


def test_rejected_optional_fields_are_dropped_and_retried(fake: Scripted) -> None:
    def script(h: BaseHTTPRequestHandler, body: dict[str, Any]) -> None:
        bad = [k for k in ("stream_options", "top_k") if k in body]
        if bad:
            json_reply(h, 400, {"error": {"message": f"Unrecognized request argument supplied: {bad[0]}"}})
        else:
            streams(sse(delta("ok", "stop")), sse(b"[DONE]"))(h, body)

    fake.script = script
    engine = OpenAIEngine(fake.url, model="m")
    settings = {"do_sample": True, "temperature": 0.5, "top_k": 5}
    chunks = run(engine, settings)
    assert text_of(chunks) == "ok" and final(chunks).finish_reason == "stop"
    assert len(fake.requests) == 3
    schema = engine.settings_schema()
    assert schema.split(settings)[1] == ["top_k"]
    with pytest.raises(ConfigError, match="top_k: the server at .* refused it"):
        schema.check("top_k", 5)
    assert "top_k" not in schema.words()
    run(engine, settings)  # remembered: no more retries
    assert len(fake.requests) == 4


def test_other_400s_are_not_retried(fake: Scripted) -> None:
    fake.script = lambda h, b: json_reply(h, 400, {"detail": [{"msg": "messages: field required"}]})
    end = final(run(OpenAIEngine(fake.url, model="m")))
    assert end.error == "the server answered 400 Bad Request: messages: field required"
    assert len(fake.requests) == 1


def test_continue_final_sends_the_vllm_fields(fake: Scripted) -> None:
    fake.script = streams(sse(delta(" more", "stop")), sse(b"[DONE]"))
    req = GenerationRequest(
        messages=[*MESSAGES, {"role": "assistant", "content": "Hi"}],
        settings=dict(GREEDY),
        continue_final=True,
    )
    chunks = list(OpenAIEngine(fake.url, model="m").stream(req, threading.Event()))
    assert text_of(chunks) == " more"
    body = fake.requests[0]
    assert body["add_generation_prompt"] is False and body["continue_final_message"] is True
    assert body["messages"][-1] == {"role": "assistant", "content": "Hi"}


def test_cancel_mid_stream_ends_promptly(fake: Scripted) -> None:
    def script(h: BaseHTTPRequestHandler, body: dict[str, Any]) -> None:
        start_stream(h)
        h.wfile.write(sse(delta("first")))
        h.wfile.flush()
        fake.release.wait(10)  # a server still thinking about the next token

    fake.script = script
    cancel = threading.Event()
    chunks = []
    t = None
    for chunk in OpenAIEngine(fake.url, model="m").stream(
        GenerationRequest(list(MESSAGES), dict(GREEDY)), cancel
    ):
        chunks.append(chunk)
        if chunk.text and t is None:
            threading.Timer(0.2, cancel.set).start()
            t = time.perf_counter()
    assert time.perf_counter() - t < 1.5
    end = final(chunks)
    assert text_of(chunks) == "first" and end.finish_reason == "interrupted" and end.error is None


def test_cancel_before_the_server_answers(fake: Scripted) -> None:
    fake.script = lambda h, b: fake.release.wait(10)
    cancel = threading.Event()
    threading.Timer(0.3, cancel.set).start()
    t0 = time.perf_counter()
    end = final(run(OpenAIEngine(fake.url, model="m"), cancel=cancel))
    assert time.perf_counter() - t0 < 1.5 and end.finish_reason == "interrupted"


def test_cancel_while_the_server_prefills_after_the_headers(fake: Scripted) -> None:
    def script(h: BaseHTTPRequestHandler, body: dict[str, Any]) -> None:
        start_stream(h)  # the stream is open; the server is still computing the prompt
        fake.release.wait(10)

    fake.script = script
    cancel = threading.Event()
    threading.Timer(0.3, cancel.set).start()
    t0 = time.perf_counter()
    end = final(run(OpenAIEngine(fake.url, model="m"), cancel=cancel))
    assert time.perf_counter() - t0 < 1.3 and end.finish_reason == "interrupted" and end.error is None


def test_read_timeout_is_a_clean_error(fake: Scripted) -> None:
    fake.script = lambda h, b: fake.release.wait(10)
    t0 = time.perf_counter()
    end = final(run(OpenAIEngine(fake.url, model="m", timeout=0.5)))
    assert time.perf_counter() - t0 < 3
    assert (
        end.finish_reason == "error"
        and end.error
        == f"the server at 127.0.0.1:{fake.server.server_address[1]} did not answer within 0.5 s"
    )


def test_closed_port_is_a_clean_error_within_seconds() -> None:
    engine = OpenAIEngine(f"http://127.0.0.1:{free_port()}", model="m")
    t0 = time.perf_counter()
    end = final(run(engine))
    assert time.perf_counter() - t0 < 3
    assert end.finish_reason == "error" and "connection refused" in end.error and "\n" not in end.error
    with pytest.raises(EngineError, match="connection refused"):
        engine.connect()


def test_model_none_takes_the_first_served_model(fake: Scripted) -> None:
    fake.script = streams(sse(delta("x", "stop")), sse(b"[DONE]"))
    engine = OpenAIEngine(fake.url.removesuffix("/v1") + "/")  # a bare host:port means /v1
    assert engine.name == "remote model"
    run(engine)
    assert fake.requests[0]["model"] == "served-model" and engine.name == "served-model"
    assert engine.served_models == ["served-model", "other-model"]


def test_model_none_and_no_server_is_an_error_chunk() -> None:
    end = final(run(OpenAIEngine(f"127.0.0.1:{free_port()}")))
    assert end.finish_reason == "error" and "connection refused" in end.error


def test_api_key_from_environment(fake: Scripted, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("QWENCHAT_API_KEY", raising=False)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-openai")
    assert OpenAIEngine(fake.url).api_key == "sk-openai"
    monkeypatch.setenv("QWENCHAT_API_KEY", "sk-qwen")
    assert OpenAIEngine(fake.url).api_key == "sk-qwen"
    assert OpenAIEngine(fake.url, api_key="sk-arg").api_key == "sk-arg"
    monkeypatch.delenv("QWENCHAT_API_KEY")
    monkeypatch.delenv("OPENAI_API_KEY")
    fake.script = streams(sse(delta("x", "stop")))
    run(OpenAIEngine(fake.url, model="m"))
    assert "Authorization" not in fake.headers[0]


def test_in_process_only_methods_say_so() -> None:
    engine = OpenAIEngine("http://127.0.0.1:9/v1", model="m")
    req = GenerationRequest(list(MESSAGES))
    with pytest.raises(NotImplementedError, match="not available for a remote engine"):
        engine.render_prompt(req)
    with pytest.raises(NotImplementedError, match="not available for a remote engine"):
        engine.count_tokens(req)
    assert engine.context_window is None and engine.default_settings() == {}
    engine.reset()


def test_bad_urls() -> None:
    with pytest.raises(EngineError):
        OpenAIEngine("ftp://example.com/v1")
    assert OpenAIEngine("localhost:8000").base_url == "http://localhost:8000/v1"
    assert OpenAIEngine("https://api.example.com/v1/").base_url == "https://api.example.com/v1"


def test_server_error_message_shapes() -> None:
    assert server_error_message(b'{"error": "plain"}') == "plain"
    assert server_error_message(b'{"detail": "Not Found"}') == "Not Found"
    assert server_error_message(b"<html>\n  Bad gateway\n</html>") == "<html> Bad gateway </html>"
    assert len(server_error_message(b"x" * 5000)) == 300


# -- malformed server data: one line naming what is wrong, never an exception ------------------------
def _chunk(choices: Any, **top: Any) -> bytes:
    return sse({"object": "chat.completion.chunk", "choices": choices, **top})


MALFORMED = {
    "choices is not a list": _chunk("notalist"),
    "a choice is not an object": _chunk([None]),
    "a choice is not an object ": _chunk([5]),
    "delta is not an object": _chunk([{"delta": 5}]),
    "delta is not an object ": _chunk([{"delta": ["x"]}]),
    "content is not a string": _chunk([{"delta": {"content": 5}}]),
    "content is not a string ": _chunk([{"delta": {"content": {"a": 1}}}]),
    "reasoning_content is not a string": _chunk([{"delta": {"reasoning_content": 3}}]),
    "reasoning is not a string": _chunk([{"delta": {"reasoning": ["x"]}}]),
    "finish_reason is not a string": _chunk([{"delta": {}, "finish_reason": ["x"]}]),
    "content is not a string  ": sse({"object": "chat.completion", "choices": [{"message": {"content": 1}}]}),
    "it is not a JSON object": sse([1, 2]),
    "it is not JSON": sse(b"{oops"),
    "it is not JSON ": sse(b"[" * 100_000),  # nested past the parser's recursion limit
}


@pytest.mark.parametrize("event", list(MALFORMED.values()), ids=[k.strip() for k in MALFORMED])
def test_malformed_event_is_one_line_naming_the_problem(fake: Scripted, event: bytes) -> None:
    fake.script = streams(sse(delta("partial ")), event, sse(b"[DONE]"))
    end = final(run(OpenAIEngine(fake.url, model="m")))
    what = next(k for k, v in MALFORMED.items() if v == event).strip()
    assert end.finish_reason == "error"
    assert end.error.startswith(f"the server sent a malformed event: {what}"), end.error
    assert "Error" not in end.error and "\n" not in end.error


@pytest.mark.parametrize(
    "usage",
    [
        {"prompt_tokens": "many", "completion_tokens": 2},
        {"prompt_tokens": -3, "completion_tokens": True},
        {"prompt_tokens": 3, "prompt_tokens_details": {"cached_tokens": "x"}},
        {"prompt_tokens": 3, "prompt_tokens_details": [1]},
        "notadict",
    ],
)
def test_bad_usage_counts_are_ignored_quietly(fake: Scripted, usage: Any) -> None:
    fake.script = streams(sse(delta("ab", "stop")), _chunk([], usage=usage), sse(b"[DONE]"))
    end = final(run(OpenAIEngine(fake.url, model="m")))
    assert end.finish_reason == "stop" and end.error is None
    counts = (end.stats.prompt_tokens, end.stats.generated_tokens, end.stats.reused_tokens)
    assert all(isinstance(n, int) and n >= 0 for n in counts)


def test_good_usage_fields_beside_a_bad_one_are_kept(fake: Scripted) -> None:
    usage = {"prompt_tokens": 9, "completion_tokens": "x", "prompt_tokens_details": {"cached_tokens": 4}}
    fake.script = streams(sse(delta("ab", "stop")), _chunk([], usage=usage), sse(b"[DONE]"))
    st = final(run(OpenAIEngine(fake.url, model="m"))).stats
    assert (st.prompt_tokens, st.reused_tokens) == (9, 4)


def test_lone_surrogates_are_replaced_visibly(fake: Scripted) -> None:
    # json.dumps writes "\ud800" as an escape, as a broken server would; a valid pair stays one character.
    fake.script = streams(
        sse(delta("A\ud800B \U0001f600", reasoning_content="r\udc00")), sse(delta(None, "stop"))
    )
    chunks = run(OpenAIEngine(fake.url, model="m"))
    assert text_of(chunks) == "<think>r\ufffd</think>\n\nA\ufffdB \U0001f600"
    assert final(chunks).finish_reason == "stop"
    text_of(chunks).encode("utf-8")  # encodable by any UTF-8 stream


def test_an_error_event_with_a_surrogate_is_encodable(fake: Scripted) -> None:
    fake.script = streams(sse({"error": {"message": "bad \ud800 thing"}}))
    end = final(run(OpenAIEngine(fake.url, model="m")))
    assert end.error == "the server reported an error: bad \ufffd thing"


def test_an_empty_data_field_dispatches_nothing(fake: Scripted) -> None:
    fake.script = streams(
        b"data:\n\n", b"data: \n\n", sse(delta("ok")), b"data:\n\n", sse(delta(None, "stop"))
    )
    chunks = run(OpenAIEngine(fake.url, model="m"))
    assert text_of(chunks) == "ok" and final(chunks).finish_reason == "stop" and final(chunks).error is None


@pytest.mark.parametrize("code", [301, 302, 303, 307, 308])
def test_a_redirect_is_reported_with_where_to_and_not_followed(fake: Scripted, code: int) -> None:
    def script(h: BaseHTTPRequestHandler, body: dict[str, Any]) -> None:
        h.send_response(code)
        h.send_header("Location", "http://u:PASSWORD@127.0.0.1:9/elsewhere/v1/chat/completions")
        h.send_header("Content-Length", "0")
        h.end_headers()

    fake.script = script
    end = final(run(OpenAIEngine(fake.url, model="m")))
    assert end.finish_reason == "error" and len(fake.requests) == 1
    assert end.error.startswith(
        "the server redirected to http://u:***@127.0.0.1:9/elsewhere/v1/chat/completions"
    )


def test_a_relative_redirect_names_the_absolute_place(fake: Scripted) -> None:
    def script(h: BaseHTTPRequestHandler, body: dict[str, Any]) -> None:
        h.send_response(307)
        h.send_header("Location", "/v2/chat/completions")
        h.send_header("Content-Length", "0")
        h.end_headers()

    fake.script = script
    end = final(run(OpenAIEngine(fake.url, model="m")))
    port = fake.server.server_address[1]
    assert f"redirected to http://127.0.0.1:{port}/v2/chat/completions" in end.error


# -- secrets -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("http://user:pw@host:8000/v1", "http://user:***@host:8000/v1"),
        ("https://tok@host/v1", "https://***@host/v1"),
        ("user:pw@host:8000", "user:***@host:8000"),
        ("http://user:p/w@host/v1", "http://user:***@host/v1"),  # a raw "/" in the password
        ("http://user:p@w@host/v1", "http://user:***@host/v1"),
        ("http://host:8000/v1", "http://host:8000/v1"),
        ("ftp://u:pw@h:notaport/x", "ftp://u:***@h:notaport/x"),
    ],
)
def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_url_credentials_are_redacted_and_sent_as_basic_auth(fake: Scripted) -> None:
    url = fake.url.replace("http://", "http://us%40er:p%3Ass@")
    engine = OpenAIEngine(url, model="m")
    assert engine.base_url == fake.url.replace("http://", "http://us%40er:***@")
    fake.script = streams(sse(delta("x", "stop")))
    run(engine)
    assert fake.headers[0]["Authorization"] == "Basic " + base64.b64encode(b"us@er:p:ss").decode()
    fake.headers.clear()
    run(OpenAIEngine(url, model="m", api_key="sk-k"))  # a key wins over the URL's credentials
    assert fake.headers[0]["Authorization"] == "Bearer sk-k"


@pytest.mark.parametrize("url", ["ftp://u:SECRET@host/v1", "http://u:SECRET@host:notaport/v1"])
def test_bad_url_errors_hide_the_password(url: str) -> None:
    with pytest.raises(EngineError) as info:
        OpenAIEngine(url)
    assert "SECRET" not in str(info.value) and "u:***@" in str(info.value)


def test_api_key_whitespace_is_stripped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("QWENCHAT_API_KEY", raising=False)
    monkeypatch.setenv("OPENAI_API_KEY", " sk-env\r\n")
    assert OpenAIEngine("http://h/v1").api_key == "sk-env"
    monkeypatch.setenv("QWENCHAT_API_KEY", " \t\n")  # blank: the next variable is used
    assert OpenAIEngine("http://h/v1").api_key == "sk-env"
    assert OpenAIEngine("http://h/v1", api_key="\tsk-arg \r\n").api_key == "sk-arg"
    assert OpenAIEngine("http://h/v1", api_key="  ").api_key is None


@pytest.mark.parametrize("key", ["sk-a\r\nX-Evil: 1", "sk-\x00b", "sk-\u2019b", "sk-\x1b]0;t\x07"])
def test_api_key_a_header_cannot_carry_is_refused_without_showing_it(key: str) -> None:
    with pytest.raises(EngineError) as info:
        OpenAIEngine("http://h/v1", api_key=key)
    assert str(info.value) == "the API key contains characters a header cannot carry"


# -- a real server (the `real_server` fixture is in conftest.py) -------------------------------------
def test_real_server_greedy_turn(real_server: RealServer) -> None:
    engine = OpenAIEngine(real_server.url)
    assert engine.connect() == ["demo"] and engine.name == "demo"
    chunks = run(engine, {"do_sample": False, "max_new_tokens": 8})
    end = final(chunks)
    assert text_of(chunks).strip() and end.finish_reason in ("stop", "length") and end.error is None
    assert end.stats.generated_tokens > 0 and end.stats.ttft_s > 0
    again = run(engine, {"do_sample": False, "max_new_tokens": 8})
    assert text_of(again) == text_of(chunks)  # greedy is repeatable
    # A wrong path on a live server: its 404, one line. (A wrong model name is no error here:
    # llama_cpp.server answers with its one model whatever the name; vLLM's 404 is covered above.)
    end = final(run(OpenAIEngine(real_server.url.replace("/v1", "/nope"), model="demo")))
    assert end.finish_reason == "error" and end.error.startswith("the server answered 404 Not Found")


def test_real_server_cancel_then_kill_mid_answer(real_server_to_kill: RealServer) -> None:
    engine = OpenAIEngine(real_server_to_kill.url, model="demo", timeout=30)
    settings = {"do_sample": False, "max_new_tokens": 400}
    cancel = threading.Event()
    chunks: list[Chunk] = []
    t = 0.0
    for chunk in engine.stream(GenerationRequest(list(MESSAGES), settings), cancel):
        chunks.append(chunk)
        if chunk.tokens >= 2 and not cancel.is_set():
            cancel.set()
            t = time.perf_counter()
    assert time.perf_counter() - t < 1.0
    assert final(chunks).finish_reason == "interrupted"

    # The server dies mid-answer: an error chunk, one line; the next turn to the dead server too.
    chunks = []
    for chunk in engine.stream(GenerationRequest(list(MESSAGES), settings), threading.Event()):
        chunks.append(chunk)
        if chunk.tokens == 2:
            os.killpg(real_server_to_kill.proc.pid, signal.SIGKILL)
    end = final(chunks)
    assert end.finish_reason == "error" and end.error and "\n" not in end.error
    real_server_to_kill.proc.wait(10)  # SIGKILL is asynchronous: the next turn is to a server that is gone
    t0 = time.perf_counter()
    end = final(run(engine))
    assert end.finish_reason == "error" and "connection refused" in end.error
    assert time.perf_counter() - t0 < 3


def test_the_servers_system_fingerprint_reaches_the_stats_and_the_engines_fingerprint(fake: Scripted) -> None:
    fake.script = streams(
        sse({**delta("Hi", "stop"), "system_fingerprint": "fp_vllm\x1b[31m_0.11"}),
        sse(b"[DONE]"),
    )
    engine = OpenAIEngine(fake.url, model="served-model")
    end = final(run(engine, GREEDY))
    assert end.stats.system_fingerprint == "fp_vllm[31m_0.11"  # kept printable
    assert engine.fingerprint() == {
        "engine": "openai",
        "model": "served-model",
        "endpoint": engine.base_url,
        "system_fingerprint": "fp_vllm[31m_0.11",
    }
