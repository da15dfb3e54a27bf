"""Reproducible turns: with the KV cache reused, a first answer, `:retry SEED` and `:undo` + resend give the
same tokens, greedy and sampled with a fixed seed, over a three-turn conversation, in both in-process engines
(real demo model). Each answer is also compared with a session recomputed from scratch, with the batch
runner's answer to the same conversation and seed, and with the turn after saving and resuming the session."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from qwenchat.chat.session import ChatSession
from qwenchat.engines.api import GenerationRequest

QUESTIONS = [
    "Name one ocean and describe it.",
    "Which animals live there? Answer in two sentences.",
    "Write a haiku about it.",
]
SEED = 7


def _session(engine: Any, sampled: bool) -> ChatSession:
    engine.reset()
    session = ChatSession(engine)
    settings: dict[str, Any] = {"max_new_tokens": 16, "do_sample": sampled}
    if sampled:
        settings.update(temperature=1.0, top_p=0.95, top_k=50)
    session.settings.update(settings)
    session.settings.set_seed(str(SEED))
    return session


def three_turns(engine: Any, sampled: bool) -> list[tuple[str, str, str]]:
    """(first answer, retry with the same seed, undo + resend) for each turn."""
    session = _session(engine, sampled)
    out = []
    for question in QUESTIONS:
        first = session.send(question)
        again = session.retry(SEED)
        session.undo()
        resent = session.send(question)
        assert first.finish_reason == again.finish_reason == resent.finish_reason != "error"
        out.append((first.text, again.text, resent.text))
    return out


def scratch(engine: Any, sampled: bool, answers: list[str]) -> list[str]:
    """Each turn recomputed from an empty cache, the history holding the answers given before."""
    session = _session(engine, sampled)
    out = []
    for question, answer in zip(QUESTIONS, answers, strict=True):
        engine.reset()
        out.append(session.send(question).text)
        session.conversation.messages[-1].content = answer
    return out


def batched(engine: Any, sampled: bool, answers: list[str]) -> list[str]:
    """Each turn as a batch run (`qwenchat batch`): the conversation up to it in a prompt record, the seed."""
    from qwenchat.batch.plan import Run
    from qwenchat.batch.runner import BatchContext, answer_one

    session = _session(engine, sampled)
    ctx = BatchContext(engine, session.settings, model="demo", engine_name="test")
    out, messages = [], []
    for question, answer in zip(QUESTIONS, answers, strict=True):
        messages.append({"role": "user", "content": question})
        run = Run(1, None, "", {}, SEED, list(messages), session.conversation.system)
        out.append(answer_one(ctx, run, lambda _: True)["answer"])
        messages.append({"role": "assistant", "content": answer})
    return out


def resumed(engine: Any, sampled: bool, tmp: Path) -> list[str]:
    """Each turn after the last was saved and resumed into a new session, its cache gone (`--resume`)."""
    from qwenchat.conversation.store import load_file

    out: list[str] = []
    session = _session(engine, sampled)
    for i, question in enumerate(QUESTIONS):
        out.append(session.send(question).text)
        session.save(tmp / f"turn{i}.json")
        engine.reset()
        session = _session(engine, sampled)
        session.adopt(load_file(tmp / f"turn{i}.json"))
    return out


def check(engine: Any, sampled: bool, tmp: Path) -> None:
    turns = three_turns(engine, sampled)
    for i, (first, again, resent) in enumerate(turns, start=1):
        assert first == again == resent, f"turn {i}: {first!r} / {again!r} / {resent!r}"
    firsts = [t[0] for t in turns]
    assert scratch(engine, sampled, firsts) == firsts
    assert batched(engine, sampled, firsts) == firsts
    assert resumed(engine, sampled, tmp) == firsts


@pytest.fixture(scope="module")
def transformers_engine(demo_loaded):
    from qwenchat.engines.transformers.engine import TransformersEngine

    model, tok = demo_loaded.model, demo_loaded.tokenizer
    return TransformersEngine(model, tok, "demo", reuse_cache=True)


@pytest.mark.parametrize("sampled", [False, True], ids=["greedy", "sampled"])
def test_transformers_turns_are_bit_identical(transformers_engine, sampled, tmp_path):
    check(transformers_engine, sampled, tmp_path)


@pytest.mark.parametrize("sampled", [False, True], ids=["greedy", "sampled"])
def test_llamacpp_turns_are_bit_identical(llamacpp_engine, sampled, tmp_path):
    check(llamacpp_engine, sampled, tmp_path)


def warmed_turns(engine: Any, sampled: bool, mode: str) -> tuple[list[str], list[int], list[int]]:
    """The three turns, with the engine warmed between them as the REPL does while the user types: "finish"
    lets the background work end before the next message, "cut" has the next message cut it short, "off"
    does not warm. Also what each turn reused, and where its own message starts in its prompt."""
    session = _session(engine, sampled)
    answers, reused, own = [], [], []
    for question in QUESTIONS:
        before = GenerationRequest(session.request().messages)  # the conversation before this message
        own.append(len(engine._tokenize(engine.render_prompt(before, generation_prompt=False))))
        result = session.send(question)
        answers.append(result.text)
        reused.append(result.stats.reused_tokens)
        if mode != "off":
            session.warm()
        if mode == "finish":
            engine.idle()
    engine.settle()  # the last "cut" work must not outlive the test (the fixture closes the model)
    return answers, reused, own


def check_warm(engine: Any, sampled: bool) -> None:
    firsts, cold_reused, _ = warmed_turns(engine, sampled, "off")
    for mode in ("finish", "cut"):
        answers, reused, own = warmed_turns(engine, sampled, mode)
        assert answers == firsts, mode
        if mode == "finish":  # the last answer computed while the user typed: a turn computes its own text
            assert reused[1:] == own[1:], (reused, own)
            assert all(w > c for w, c in zip(reused[1:], cold_reused[1:], strict=True)), (reused, cold_reused)


@pytest.mark.parametrize("sampled", [False, True], ids=["greedy", "sampled"])
def test_transformers_warming_between_turns_changes_no_token(transformers_engine, sampled):
    check_warm(transformers_engine, sampled)


def test_llamacpp_warming_between_turns_changes_no_token(llamacpp_engine):
    check_warm(llamacpp_engine, False)
