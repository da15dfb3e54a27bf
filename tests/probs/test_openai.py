"""Token probabilities through `--endpoint`: the scripted server (exact protocol cases) and the real
llama_cpp.server on the demo GGUF (when the serve-test extra is installed)."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import pytest

from qwenchat.chat.session import ChatSession
from qwenchat.engines.openai.engine import OpenAIEngine
from qwenchat.probs.branch import plan_branch
from tests.support.real_server import RealServer
from tests.support.scripted_server import Scripted, delta, sse, streams


@pytest.fixture
def fake() -> Iterator[Scripted]:
    server = Scripted()
    yield server
    server.close()


def lp_entry(token: str, logprob: float, tops: list[tuple[str, float]]) -> dict[str, Any]:
    return {
        "token": token,
        "logprob": logprob,
        "bytes": list(token.encode()),
        "top_logprobs": [{"token": t, "logprob": lp, "bytes": list(t.encode())} for t, lp in tops],
    }


def with_logprobs(content: str, entries: list[dict[str, Any]], finish: str | None = None) -> dict[str, Any]:
    event = delta(content, finish)
    event["choices"][0]["logprobs"] = {"content": entries}
    return event


def chat_on(url: str, k: int = 2) -> ChatSession:
    chat = ChatSession(OpenAIEngine(url, model="served-model"))
    chat.settings.update({"do_sample": False, "max_new_tokens": 8})
    chat.probs_k = k
    return chat


def test_server_logprobs_are_recorded_labelled_and_requested(fake: Scripted) -> None:
    fake.script = streams(
        sse(with_logprobs("Hel", [lp_entry("Hel", -0.1, [("Hel", -0.1), ("Hi", -2.5)])])),
        sse(with_logprobs("lo", [lp_entry("lo", -0.7, [("p", -0.6), ("lo", -0.7)])], "stop")),
        sse(b"[DONE]"),
    )
    chat = chat_on(fake.url)
    chat.send("Say hi.")
    assert fake.requests[0]["logprobs"] is True and fake.requests[0]["top_logprobs"] == 2
    probs = chat.conversation.messages[-1].probs
    assert [p.text for p in probs] == ["Hel", "lo"]
    assert all(p.source == "server" and p.id == -1 for p in probs)
    assert probs[0].rank() == 1 and probs[1].rank() == 2
    assert math.isclose(probs[1].top[0].logprob, -0.6)


def test_a_server_without_logprobs_gets_one_notice(fake: Scripted) -> None:
    fake.script = streams(sse(delta("Hello", "stop")), sse(b"[DONE]"))
    chat = chat_on(fake.url)
    result = chat.send("Say hi.")
    assert result.text == "Hello" and chat.conversation.messages[-1].probs is None
    assert chat.observer.notices == [
        "no token probabilities came with this answer: the server sends no logprobs"
    ]


def test_malformed_logprobs_are_one_error_line(fake: Scripted) -> None:
    bad = delta("x", "stop")
    bad["choices"][0]["logprobs"] = {"content": [{"token": "x", "logprob": "high"}]}
    fake.script = streams(sse(bad), sse(b"[DONE]"))
    result = chat_on(fake.url).send("Say hi.")
    assert result.finish_reason == "error"
    assert result.error == "the server sent a malformed event: a logprob is not a number ≤ 0"


def test_branch_through_an_assistant_prefill(fake: Scripted) -> None:
    fake.script = streams(
        sse(with_logprobs("A", [lp_entry("A", -0.2, [("A", -0.2), ("B", -1.9)])])),
        sse(with_logprobs(" cat", [lp_entry(" cat", -0.3, [(" cat", -0.3), (" dog", -1.5)])], "stop")),
        sse(b"[DONE]"),
    )
    chat = chat_on(fake.url)
    chat.send("Name a pet.")
    old = chat.conversation.messages[-1]
    fake.script = streams(
        sse(with_logprobs(" barks", [lp_entry(" barks", -0.5, [])], "stop")), sse(b"[DONE]")
    )
    chat.branch(plan_branch(chat.engine, old.probs, "2", "2"))
    body = fake.requests[-1]
    assert body["continue_final_message"] is True and body["add_generation_prompt"] is False
    assert body["messages"][-1] == {"role": "assistant", "content": "A dog"}
    new = chat.conversation.messages[-1]
    assert new.content == "A dog barks" and [p.text for p in new.probs] == ["A", " dog", " barks"]
    chat.undo()
    assert chat.conversation.messages[-1] is old


def test_real_llama_cpp_server_logprobs(real_server: RealServer) -> None:
    chat = ChatSession(OpenAIEngine(real_server.url))
    chat.settings.update({"do_sample": False, "max_new_tokens": 8})
    chat.probs_k = 3
    result = chat.send("Say hi.")
    probs = chat.conversation.messages[-1].probs
    assert probs, chat.observer.notices  # llama_cpp.server streams logprobs for chat completions
    assert "".join(p.text for p in probs) == result.text
    for p in probs:
        assert p.rank() == 1 and len(p.top) <= 3 and sum(a.prob for a in p.top) <= 1 + 1e-6
