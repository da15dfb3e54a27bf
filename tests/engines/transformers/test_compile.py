"""--compile (the GPU fast path): a static KV cache and a compiled decode step (transformers engine).

Compilations are counted with a backend that records each graph dynamo hands it and runs it as traced (no
inductor: fast on a CPU); one slow test compiles the tiny model with inductor for real.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest

from qwenchat.chat.observer import Headless
from qwenchat.chat.session import ChatSession
from qwenchat.conversation.file import conversation_from_dict, conversation_to_dict
from qwenchat.engines.api import GenerationRequest

GRAPHS: list[Any] = []


def counting_backend(gm: Any, example_inputs: Any) -> Any:
    GRAPHS.append(gm)
    return gm.forward


QUESTIONS = ["Tell me about the ocean and the fish that live in it. " * 12, "And rivers?"]


def session(engine: Any, max_new: int = 24, **settings: Any) -> ChatSession:
    engine.reset()
    chat = ChatSession(engine)
    chat.settings.update({"max_new_tokens": max_new, "do_sample": False, **settings})
    return chat


def engines(model: Any, tok: Any, chunk: int = 16) -> tuple[Any, Any]:
    """(the engine as it is, the engine with --compile and the counting backend)."""
    from qwenchat.engines.transformers.compile import enable
    from qwenchat.engines.transformers.engine import TransformersEngine

    plain = TransformersEngine(model, tok, "plain")
    compiled = TransformersEngine(model, tok, "compiled")
    for engine in (plain, compiled):
        engine.prefill_chunk = chunk  # short prompts still have whole chunks for the next turn to keep
    enable(compiled, backend=counting_backend)
    return plain, compiled


@pytest.fixture(scope="module")
def tiny(tiny_model) -> tuple[Any, Any]:
    return engines(*tiny_model)


def test_second_turn_and_retry_do_not_recompile_and_match_the_dynamic_cache(tiny) -> None:
    plain, compiled = tiny
    expected = session(plain).send(QUESTIONS[0]).text
    chat = session(compiled)
    first = chat.send(QUESTIONS[0])
    after_turn_1 = len(GRAPHS)
    assert chat.warm()  # the REPL's background prefill while the user types: the static cache too
    compiled.idle()
    second = chat.send(QUESTIONS[1])
    again = chat.retry(None)
    assert after_turn_1 > 0  # the decode step was compiled (here, or by an earlier test at this size)...
    assert len(GRAPHS) == after_turn_1  # ...once: turn 2 and the retry reuse it
    assert first.text == expected
    assert second.stats.reused_tokens > 0 and again.stats.reused_tokens > second.stats.reused_tokens
    assert again.text == second.text
    ref = session(plain)
    ref.send(QUESTIONS[0])
    assert ref.send(QUESTIONS[1]).text == second.text


def test_a_conversation_that_outgrows_the_cache_grows_it_once_and_keeps_the_prefix(tiny_model) -> None:
    from qwenchat.engines.transformers.compile import MIN_CACHE

    plain, compiled = engines(*tiny_model)  # a fresh engine: its cache starts at the smallest size
    chat, ref = session(compiled, max_new=40), session(plain, max_new=40)
    assert chat.send("Hi").text == ref.send("Hi").text
    assert compiled._cache.get_max_length() == MIN_CACHE
    small = len(GRAPHS)
    long = "Now the long part: " + "rivers, lakes and seas. " * 120  # prompt + answer > MIN_CACHE tokens
    grown = chat.send(long)
    assert compiled._cache.get_max_length() == 2 * MIN_CACHE
    assert grown.stats.reused_tokens > 0  # the kept prefix was copied into the bigger cache
    assert grown.text == ref.send(long).text
    assert len(GRAPHS) > small  # compiled for the new size...
    big = len(GRAPHS)
    assert chat.send("Thanks.").text == ref.send("Thanks.").text
    assert len(GRAPHS) == big  # ...once


class CtrlCAfter(Headless):
    """Presses Ctrl-C (session.interrupt) once an answer has streamed `n` pieces of text."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.n = n
        self.session: ChatSession | None = None

    def answer(self, *, think_open: bool | None, continues: str | None) -> Any:
        observer, seen = self, [0]

        class Sink:
            def feed(self, text: str) -> None:
                seen[0] += bool(text)  # prefill progress comes as empty pieces
                if seen[0] == observer.n and observer.session is not None:
                    observer.session.interrupt()

            def end(self, *args: Any, **kwargs: Any) -> None:
                pass

        return Sink()


def test_ctrl_c_stops_and_keeps_the_partial_answer_with_stats(tiny) -> None:
    plain, compiled = tiny
    chat = session(compiled, max_new=400)
    chat.send(QUESTIONS[1])  # compiled (or reused) before the cancelled turn
    count = len(GRAPHS)
    chat.observer = ctrl_c = CtrlCAfter(5)
    ctrl_c.session = chat
    cut = chat.send("Count to a thousand.")
    assert cut.finish_reason == "interrupted" and cut.text and cut.kept
    assert chat.conversation.messages[-1].content == cut.text  # the partial answer stays in the history
    assert 5 <= cut.stats.generated_tokens < 400 and cut.stats.decode_tps > 0 and cut.stats.ttft_s > 0
    assert len(GRAPHS) == count
    # the next turn goes on from the kept cache and answers as the dynamic cache does
    ctrl_c.session = None
    chat.settings.update({"max_new_tokens": 24})
    ref = session(plain, max_new=24)
    ref.conversation = conversation_from_dict(conversation_to_dict(chat.conversation))
    after = chat.send("Go on.")
    assert after.stats.reused_tokens > 0 and after.text == ref.send("Go on.").text
    assert len(GRAPHS) == count


def test_probs_turn_decodes_eagerly_with_the_same_tokens(tiny) -> None:
    _, compiled = tiny
    chat = session(compiled)
    plain_answer = chat.send(QUESTIONS[1]).text
    count = len(GRAPHS)
    chat.probs_k = 3
    with_probs = chat.retry(None)
    assert with_probs.text == plain_answer
    assert len(GRAPHS) == count


def test_prompt_lookup_is_refused_with_one_line(tiny) -> None:
    _, compiled = tiny
    request = GenerationRequest([{"role": "user", "content": "Hi"}], {"prompt_lookup_num_tokens": 4})
    last = list(compiled.stream(request, threading.Event()))[-1]
    assert last.finish_reason == "error"
    assert "prompt lookup does not combine with --compile" in last.error and "\n" not in last.error


@pytest.mark.parametrize(
    "flags, line",
    [
        (["--demo", "--engine", "llama.cpp"], "--compile is for the transformers engine"),
        (["--endpoint", "http://127.0.0.1:9/v1"], "--compile is for the transformers engine"),
        (["--demo", "--lookup", "4"], "--compile does not combine with speculative decoding"),
    ],
)
def test_other_engines_and_speculation_refuse_it_before_loading(flags, line, out) -> None:
    from qwenchat.cli.engine import make_engine
    from qwenchat.cli.parser import parse

    assert make_engine(parse(["--compile", *flags]).model, out) is None
    text = out.buf.getvalue().strip()
    assert line in text and len(text.splitlines()) == 1


@pytest.mark.slow  # no model load, but inductor compiling C++ for a minute
def test_inductor_compiles_the_tiny_model_once_with_the_same_tokens(tiny_model) -> None:
    import shutil

    import torch

    if not any(shutil.which(c) for c in ("g++", "c++", "clang++")):
        pytest.skip("inductor on a CPU needs a C++ compiler")
    from qwenchat.engines.transformers.compile import enable
    from qwenchat.engines.transformers.engine import TransformersEngine

    model, tok = tiny_model
    engine = TransformersEngine(model, tok, "inductor")
    enable(engine)  # the default: inductor
    ref = session(TransformersEngine(model, tok, "plain"), max_new=12)
    chat = session(engine, max_new=12)
    torch._dynamo.utils.counters.clear()
    for question in QUESTIONS:
        assert chat.send(question).text == ref.send(question).text
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] >= 1
    compiled = dict(torch._dynamo.utils.counters["stats"])
    chat.retry(None)
    assert dict(torch._dynamo.utils.counters["stats"]) == compiled


@pytest.fixture(scope="module")
def demo_f32_engines(demo_f32) -> tuple[Any, Any]:
    return engines(demo_f32.model, demo_f32.tokenizer)


def test_static_cache_gives_the_dynamic_caches_greedy_tokens_on_the_demo_model(demo_f32_engines) -> None:
    plain, compiled = demo_f32_engines
    questions = [
        "Write a Python function that reverses a string, with a short example of its use.",
        "Now add type hints and a docstring.",
    ]
    ref, chat = session(plain, max_new=40), session(compiled, max_new=40)
    compiled.static.warm_up(40)  # as the chat does at start-up, with the model's own generation config
    count = len(GRAPHS)
    for question in questions:
        want, got = ref.send(question), chat.send(question)
        assert got.text == want.text
        assert got.stats.generated_tokens == want.stats.generated_tokens
    assert got.stats.reused_tokens > 0
    assert len(GRAPHS) == count  # both turns ran the graph the warm-up compiled


def test_warm_up_compiles_before_the_first_turn(tiny_model) -> None:
    _, compiled = engines(*tiny_model)
    before = len(GRAPHS)
    compiled.static.warm_up(1500)  # a size no other test uses: 2048
    assert len(GRAPHS) > before
    warmed = len(GRAPHS)
    cancel = threading.Event()
    request = GenerationRequest(
        [{"role": "user", "content": "Hi"}], {"max_new_tokens": 1000, "do_sample": False}
    )
    for chunk in compiled.stream(request, cancel):
        if chunk.tokens >= 3:
            cancel.set()
    assert compiled._cache.get_max_length() == 2048
    assert len(GRAPHS) == warmed


def test_a_failed_start_up_compile_falls_back_to_eager_with_one_line(tiny_model, out) -> None:
    from qwenchat.cli import compile_flags

    plain, compiled = engines(*tiny_model)

    def broken(max_new_tokens: int | None) -> None:
        raise RuntimeError("no compiler for this\nsecond line")

    compiled.static.warm_up = broken
    chat = session(compiled)
    compile_flags.warm_up(compiled, chat.settings, out)
    assert compiled.static is None
    lines = out.buf.getvalue().strip().splitlines()
    lines = [line for line in lines if not line.startswith("compiling the decode step")]  # the status line
    assert len(lines) == 1 and "did not compile (no compiler for this)" in lines[0]
    assert chat.send("Hi").text == session(plain).send("Hi").text
