"""`:score`'s logic and engines on fast models: Score's sums, the scoring request, vLLM's prompt logprobs
parsed, the endpoint against the scripted server, and the transformers engine on the tiny random-weight
Qwen2 (numbers against an independent forward pass; the kept cache and the next turn untouched). The
equality with `:probs` on the demo model, in both in-process engines, is in test_score_demo.py."""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator

import pytest
import torch

from qwenchat.chat.session import ChatSession
from qwenchat.engines.api import GenerationRequest, ScoreError, SupportsScore
from qwenchat.engines.openai.engine import OpenAIEngine
from qwenchat.engines.openai.logprobs import BadLogprobs, NoPromptLogprobs, parse_prompt_logprobs
from qwenchat.engines.transformers.engine import TransformersEngine
from qwenchat.probs.record import Alt, TokenProb
from qwenchat.probs.score import Score, scoring_request
from tests.support.scripted_server import Scripted, json_reply, prompt_logprobs_reply

# -- Score and the request --------------------------------------------------------------------


def test_score_sums_the_tokens_and_names_the_least_likely():
    toks = [TokenProb(i, t, math.log(p)) for i, (t, p) in enumerate([("A", 0.9), ("b", 0.1), ("c", 0.5)])]
    s = Score.of(toks, least=2)
    assert s.total == pytest.approx(math.log(0.9 * 0.1 * 0.5))
    assert s.mean == pytest.approx(s.total / 3) and s.ppl == pytest.approx(math.exp(-s.total / 3))
    assert [i for i, _ in s.least] == [2, 3]
    assert s.fields() == {"ref_logprob": round(s.total, 4), "ref_ppl": round(s.ppl, 4), "ref_tokens": 3}
    with pytest.raises(ScoreError):
        Score.of([])


def test_scoring_request_ends_at_the_last_user_message():
    msgs = [
        {"role": "user", "content": "q1"},
        {"role": "assistant", "content": "a1"},
        {"role": "user", "content": "q2"},
        {"role": "assistant", "content": "a2"},
    ]
    req = scoring_request(GenerationRequest(msgs, continue_final=True, prefix_ids=[1], json_schema={}), 3)
    assert req.messages == msgs[:3] and not req.continue_final and req.prefix_ids is None
    assert req.json_schema is None and req.probs_k == 3
    with pytest.raises(ScoreError, match="no message of yours"):
        scoring_request(GenerationRequest([]))


# -- vLLM's prompt logprobs -------------------------------------------------------------------
PROMPT = [(1, "<|im_start|>", 0.0), (2, "user", -1.0), (3, "\nhi", -2.0), (4, "\n", -0.5)]
ANSWER = [(10, "Hel", -0.25), (11, "lo", -0.5), (12, " there", -1.5)]


def test_prompt_logprobs_give_the_answers_tail_with_ids_and_alternatives():
    data = {"prompt_logprobs": [None] + [{str(i): {"logprob": lp, "decoded_token": t}} for i, t, lp in
                                         (PROMPT + ANSWER)[1:]]}  # fmt: skip
    data["prompt_token_ids"] = [i for i, _, _ in PROMPT + ANSWER]
    recs = parse_prompt_logprobs(data, "Hello there")
    assert [(r.id, r.text, r.logprob) for r in recs] == ANSWER
    assert all(r.source == "server" for r in recs)


def test_prompt_logprobs_refused_in_one_line_each():
    with pytest.raises(NoPromptLogprobs):
        parse_prompt_logprobs({"choices": []}, "x")
    for bad in (
        {"prompt_logprobs": "no"},
        {"prompt_logprobs": [None, {"5": {"logprob": 0.5}}]},  # positive
        {"prompt_logprobs": [None, {"5": {"logprob": "x"}}]},
        {"prompt_logprobs": [None, {"5": {"logprob": -1}}], "prompt_token_ids": [1]},  # lengths differ
        {"prompt_logprobs": [None, {"5": {"logprob": -1}}], "prompt_token_ids": [1, 6]},  # not among them
        {"prompt_logprobs": [None, {"5": {"logprob": -1, "decoded_token": "a"}}]},  # too short for "abc"
    ):
        with pytest.raises(BadLogprobs):
            parse_prompt_logprobs(bad, "abc")


# -- the endpoint against the scripted server -------------------------------------------------
@pytest.fixture
def fake() -> Iterator[Scripted]:
    server = Scripted()
    yield server
    server.close()


def remote_chat(url: str) -> ChatSession:
    chat = ChatSession(OpenAIEngine(url, model="served-model"))
    chat.conversation.add_user("hi")
    chat.conversation.add_assistant("Hi!")
    return chat


def test_endpoint_scores_from_prompt_logprobs_and_asks_for_them(fake: Scripted):
    fake.script = prompt_logprobs_reply(PROMPT + ANSWER)
    chat = remote_chat(fake.url)
    assert isinstance(chat.engine, SupportsScore)
    s = chat.score("Hello there")
    assert [t.text for t in s.tokens] == ["Hel", "lo", " there"]
    assert s.total == pytest.approx(-2.25)
    assert s.tokens[0].top[0] == Alt("Hel", 10, -0.25) and s.tokens[0].top[1].text == "<alt0>"
    body = fake.requests[-1]
    assert body["messages"][-1] == {"role": "assistant", "content": "Hello there"}
    assert body["messages"][-2] == {"role": "user", "content": "hi"}  # the old answer left out
    assert body["continue_final_message"] is True and body["add_generation_prompt"] is False
    assert body["prompt_logprobs"] >= 1 and body["stream"] is False
    # without prompt_token_ids (older vLLM) the first candidate is the prompt's token
    fake.script = prompt_logprobs_reply(PROMPT + ANSWER, with_ids=False)
    assert chat.score("Hello there").total == pytest.approx(-2.25)
    assert chat.conversation.messages[-1].content == "Hi!"  # nothing changed


def test_endpoint_without_prompt_logprobs_says_so_in_one_line(fake: Scripted):
    fake.script = lambda h, body: json_reply(
        h, 200, {"choices": [{"index": 0, "message": {"role": "assistant", "content": "x"}}]}
    )
    with pytest.raises(ScoreError, match="returns no prompt logprobs, so it cannot score"):
        remote_chat(fake.url).score("Hello")
    fake.script = lambda h, body: json_reply(h, 400, {"error": {"message": "bad \x1b[31m field"}})
    with pytest.raises(ScoreError, match="answered 400") as err:
        remote_chat(fake.url).score("Hello")
    assert "\n" not in str(err.value)


# -- the transformers engine on the tiny model ------------------------------------------------
@pytest.fixture(scope="module")
def tiny_chat(tiny_model) -> ChatSession:
    model, tok = tiny_model
    chat = ChatSession(TransformersEngine(model, tok, "tiny"))
    chat.settings.update({"do_sample": False, "max_new_tokens": 6})
    chat.send("Tell me something about the sea and the sky, please.")
    return chat


ANSWER_TEXT = "The sea is blue, and so is the sky."


def test_tiny_score_matches_an_independent_forward_pass(tiny_chat, tiny_model):
    model, tok = tiny_model
    s = tiny_chat.score(ANSWER_TEXT)
    engine = tiny_chat.engine
    prompt = engine.encode(scoring_request(tiny_chat.request()))
    answer = tok(ANSWER_TEXT, add_special_tokens=False)["input_ids"]
    with torch.inference_mode():
        logits = model(input_ids=torch.tensor([prompt + answer])).logits[0].float()
    logp = torch.log_softmax(logits, dim=-1)[len(prompt) - 1 : -1]
    expected = [logp[i, t].item() for i, t in enumerate(answer)]
    assert [t.id for t in s.tokens] == answer
    assert "".join(t.text for t in s.tokens) == ANSWER_TEXT
    assert max(abs(a.logprob - b) for a, b in zip(s.tokens, expected, strict=True)) < 1e-4
    assert s.total == pytest.approx(math.fsum(expected), abs=1e-3)
    assert all(t.top and t.top[0].logprob >= t.logprob - 1e-6 for t in s.tokens)


def test_tiny_score_is_reproducible_keeps_the_cache_and_changes_no_answer(tiny_model):
    model, tok = tiny_model

    def chat() -> ChatSession:
        c = ChatSession(TransformersEngine(model, tok, "tiny"))
        c.settings.update({"do_sample": False, "max_new_tokens": 8})
        return c

    plain, scored = chat(), chat()
    first = plain.send("one two three").text
    assert scored.send("one two three").text == first
    a = scored.score(ANSWER_TEXT)
    b = scored.score(ANSWER_TEXT)
    assert [t.logprob for t in a.tokens] == [t.logprob for t in b.tokens]  # bit-identical
    assert scored.last_stats is not None
    prompt_tokens = scored.last_stats.prompt_tokens
    assert scored.retry().text == first  # a retry finds the prompt cached, as after the turn itself
    assert scored.last_stats.reused_tokens == prompt_tokens - 1
    scored.score("Something else entirely.")
    assert [m.content for m in scored.conversation.messages] == [
        m.content for m in plain.conversation.messages
    ]
    assert scored.send("four five").text == plain.send("four five").text


def test_tiny_score_refusals_change_nothing(tiny_chat):
    before = list(tiny_chat.conversation.messages)
    with pytest.raises(ScoreError, match="empty"):
        tiny_chat.score("")
    with pytest.raises(ScoreError, match="do not fit"):
        tiny_chat.score("word " * 5000)
    cancel = threading.Event()
    cancel.set()
    from qwenchat.probs.score import score_answer

    with pytest.raises(ScoreError, match="interrupted"):
        score_answer(tiny_chat.engine, scoring_request(tiny_chat.request()), "Hello.", cancel)
    assert tiny_chat.conversation.messages == before
    assert tiny_chat.score("Hello.").tokens  # the engine still works


def test_real_llama_cpp_server_cannot_score_and_says_so(real_server):
    """llama_cpp.server answers a chat completion but sends no prompt logprobs: one line, nothing changed."""
    chat = ChatSession(OpenAIEngine(real_server.url))
    chat.settings.update({"do_sample": False, "max_new_tokens": 4})
    chat.send("Say hi.")
    before = list(chat.conversation.messages)
    with pytest.raises(ScoreError) as err:
        chat.score("Hello!")
    assert "cannot score" in str(err.value) and "\n" not in str(err.value)
    assert chat.conversation.messages == before
    assert chat.send("Again.").text  # the server and the session go on


def test_interrupt_stops_a_score_and_the_chat_goes_on_as_before(tiny_model):
    """Ctrl-C (the session's interrupt, as the REPL's and the batch's SIGINT handlers call it) stops a long
    score between two tokens; nothing changed, and the next turn is the one an unscored chat gets."""
    model, tok = tiny_model

    def chat() -> ChatSession:
        c = ChatSession(TransformersEngine(model, tok, "tiny"))
        c.settings.update({"do_sample": False, "max_new_tokens": 6})
        c.send("one two three")
        return c

    scored, plain = chat(), chat()
    timer = threading.Timer(0.2, scored.interrupt)
    timer.start()
    with pytest.raises(ScoreError, match="interrupted"):
        scored.score("lorem ipsum dolor " * 600)  # thousands of tokens, one at a time
    timer.join()
    assert [m.content for m in scored.conversation.messages] == [
        m.content for m in plain.conversation.messages
    ]
    assert scored.send("four five").text == plain.send("four five").text
