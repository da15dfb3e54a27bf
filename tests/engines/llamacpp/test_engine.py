"""The llama.cpp engine on the real demo GGUF (needs the `llamacpp` extra), plus its pure-Python parts."""

from __future__ import annotations

import sys
import threading
import time
from typing import Any

import pytest

from qwenchat.engines.api import Chunk, EngineError, GenerationRequest
from qwenchat.engines.llamacpp.template import ChatTemplate

SYSTEM = "You are a helpful assistant."


def req(messages: list[dict[str, str]], **settings: Any) -> GenerationRequest:
    return GenerationRequest(
        messages=messages, settings={"do_sample": False, "max_new_tokens": 24, **settings}
    )


def ask(engine: Any, request: GenerationRequest, cancel: threading.Event | None = None) -> list[Chunk]:
    return list(engine.stream(request, cancel or threading.Event()))


def text_of(chunks: list[Chunk]) -> str:
    return "".join(c.text for c in chunks)


def final(chunks: list[Chunk]) -> Chunk:
    assert chunks[-1].finish_reason is not None
    assert all(c.finish_reason is None for c in chunks[:-1])
    return chunks[-1]


@pytest.fixture(scope="module")
def engine(llamacpp_engine):
    return llamacpp_engine  # the demo GGUF (conftest), shared by this module's tests


# -- no llama.cpp needed ------------------------------------------------------------------------------
def test_chat_template_renders_as_transformers(demo_dir) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(demo_dir)  # its template is the one the demo GGUF carries
    tmpl = ChatTemplate(tok.chat_template, bos_token="", eos_token="<|im_end|>")
    convs = [
        [{"role": "user", "content": "hi"}],
        [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "Hello! "},
            {"role": "user", "content": "again"},
        ],
    ]
    for msgs in convs:
        assert tmpl.render(msgs) == tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    partial = [*convs[0], {"role": "assistant", "content": "The answer is"}]
    expected = tok.apply_chat_template(partial, tokenize=False, continue_final_message=True)
    assert tmpl.render(partial, continue_final=True) == expected
    assert expected.endswith("<|im_start|>assistant\nThe answer is")


def test_missing_llama_cpp_is_one_line(monkeypatch, tmp_path) -> None:
    from qwenchat.engines.llamacpp.engine import LlamaCppEngine

    monkeypatch.setitem(sys.modules, "llama_cpp", None)
    with pytest.raises(EngineError, match=r"qwenchat\[llamacpp\]"):
        LlamaCppEngine(tmp_path / "x.gguf")


def test_settings_llama_cpp_honours_and_refuses() -> None:
    from qwenchat.engines.llamacpp.engine import SCHEMA
    from qwenchat.settings import ConfigError

    assert "typical_p" in SCHEMA.words() and "num_beams" not in SCHEMA.words()
    with pytest.raises(ConfigError, match="num_beams: the llama.cpp engine cannot honour it"):
        SCHEMA.check("num_beams", 4)


# -- the real engine ----------------------------------------------------------------------------------
def test_missing_file(engine, tmp_path) -> None:
    from qwenchat.engines.llamacpp.engine import LlamaCppEngine

    with pytest.raises(EngineError, match="no GGUF file"):
        LlamaCppEngine(tmp_path / "nope.gguf")


def test_facts(engine) -> None:
    from qwenchat.models.demo import GENERATION_DEFAULTS

    assert engine.context_window == 2048
    assert engine.default_settings() == GENERATION_DEFAULTS
    r = req([{"role": "system", "content": SYSTEM}, {"role": "user", "content": "hi"}])
    assert engine.render_prompt(r).endswith("<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n")
    assert engine.count_tokens(r) == 20
    # Refused up front by the engine's schema (num_beams too: key-based, whatever its value).
    assert engine.settings_schema().split(
        {"temperature": 0.5, "typical_p": 0.9, "no_repeat_ngram_size": 3, "num_beams": 1}
    )[1] == ["no_repeat_ngram_size", "num_beams"]


def test_decode_threads_default_to_the_physical_cores(engine) -> None:
    # llama-cpp-python's default (cpu_count // 2) assumes SMT: on 2 cores without it, decode ran at half speed
    # (The shared fixture pins one thread for the shared CI machine; this loads the file once more.)
    from qwenchat.engines.llamacpp.engine import LlamaCppEngine
    from qwenchat.engines.llamacpp.load import physical_cores

    own = LlamaCppEngine(engine.path, n_ctx=256)
    try:
        assert own.llm.n_threads == physical_cores() >= 1
    finally:
        own.llm.close()


def test_physical_cores_counts_smt_siblings_once(monkeypatch, tmp_path) -> None:
    from qwenchat.engines.llamacpp import load as llamacpp_load

    for cpu, core in enumerate([0, 0, 1, 1]):  # two cores with two hardware threads each
        topology = tmp_path / f"cpu{cpu}" / "topology"
        topology.mkdir(parents=True)
        (topology / "physical_package_id").write_text("0\n")
        (topology / "core_id").write_text(f"{core}\n")
    monkeypatch.setattr(llamacpp_load.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    assert llamacpp_load.physical_cores(tmp_path) == 2
    monkeypatch.setattr(llamacpp_load.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3, 4})  # no topology
    assert llamacpp_load.physical_cores(tmp_path) == 2  # then half the CPUs, as llama-cpp-python guesses


def test_greedy_answer_and_repeat(engine) -> None:
    engine.reset()
    r = req(
        [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": "What is 2+2? Reply with the number."},
        ]
    )
    chunks = ask(engine, r)
    assert chunks[0].think_open is False and chunks[0].text == ""
    end = final(chunks)
    assert "4" in text_of(chunks) and end.finish_reason == "stop" and end.error is None
    st = end.stats
    assert st.prompt_tokens == engine.count_tokens(r) and st.reused_tokens == 0
    assert st.generated_tokens >= 1 and st.ttft_s > 0 and st.finish_reason == "stop"
    again = ask(engine, r)
    assert text_of(again) == text_of(chunks)  # greedy is repeatable ...
    assert final(again).stats.reused_tokens == st.prompt_tokens - 1  # ... and the whole prompt was cached
    engine.reuse_cache = False
    try:
        cold = ask(engine, r)
        assert final(cold).stats.reused_tokens == 0 and text_of(cold) == text_of(chunks)
    finally:
        engine.reuse_cache = True


def test_length_and_stop_strings(engine) -> None:
    msgs = [{"role": "user", "content": "Count from 1 to 20, separated by commas, nothing else."}]
    chunks = ask(engine, req(msgs, max_new_tokens=5))
    end = final(chunks)
    assert end.finish_reason == "length" and end.stats.generated_tokens == 5
    chunks = ask(engine, req(msgs, max_new_tokens=60, stop_strings=["7"]))
    text = text_of(chunks)
    assert final(chunks).finish_reason == "stop" and "6" in text and "7" not in text


def test_sampling_with_a_seed_is_repeatable(engine) -> None:
    msgs = [{"role": "user", "content": "Name a random fruit."}]
    r = GenerationRequest(
        msgs, {"do_sample": True, "temperature": 1.0, "top_k": 50, "max_new_tokens": 12}, seed=3
    )
    assert text_of(ask(engine, r)) == text_of(ask(engine, r))


def test_cancel_mid_answer_is_prompt(engine) -> None:
    cancel = threading.Event()
    chunks: list[Chunk] = []
    t = 0.0
    r = req([{"role": "user", "content": "Write a long essay about the sea."}], max_new_tokens=500)
    for chunk in engine.stream(r, cancel):
        chunks.append(chunk)
        if chunk.tokens >= 3 and not cancel.is_set():
            cancel.set()
            t = time.perf_counter()
    assert time.perf_counter() - t < 1.0
    end = final(chunks)
    assert end.finish_reason == "interrupted" and end.stats.generated_tokens < 10
    # The engine is usable right after, and the interrupted turn's cache is still a valid prefix.
    assert final(ask(engine, req([{"role": "user", "content": "Say OK."}], max_new_tokens=4))).error is None


def test_continue_final(engine) -> None:
    msgs = [
        {"role": "user", "content": "What is the capital of France?"},
        {"role": "assistant", "content": "The capital of France is"},
    ]
    r = GenerationRequest(msgs, {"do_sample": False, "max_new_tokens": 6}, continue_final=True)
    assert engine.render_prompt(r).endswith("The capital of France is")
    assert "Paris" in text_of(ask(engine, r))


def test_multiturn_reuses_the_prefix(engine) -> None:
    engine.reset()
    long_system = SYSTEM + " " + " ".join(f"Rule {i}: be brief." for i in range(40))
    msgs = [{"role": "system", "content": long_system}, {"role": "user", "content": "Name a prime number."}]
    first = final(ask(engine, req(msgs, max_new_tokens=12)))
    assert first.stats.reused_tokens == 0 and first.stats.prompt_tokens > 100
    answer = text_of(ask(engine, req(msgs, max_new_tokens=12)))  # same turn again, to get its text
    msgs += [{"role": "assistant", "content": answer}, {"role": "user", "content": "And another one?"}]
    warm = final(ask(engine, req(msgs, max_new_tokens=4))).stats
    # The first prompt was kept but its last token, which generate evaluated: that token (alone, as the
    # schedule says) and the answer, sampled a token at a time, are evaluated again on the schedule, as a
    # fresh start would (bit-identical turns).
    assert warm.reused_tokens == first.stats.prompt_tokens - 1 > warm.prompt_tokens / 2
    assert warm.prefilled_tokens == warm.prompt_tokens - warm.reused_tokens
    # Background work between turns computes that segment while the user types: the turn after it computes
    # its own message only.
    answer = text_of(ask(engine, req(msgs, max_new_tokens=4)))
    msgs += [{"role": "assistant", "content": answer}]
    probes = [req([*msgs, {"role": "user", "content": p}]) for p in ("a", "\n\n1. ")]
    assert engine.warm(probes)
    engine.idle()
    msgs += [{"role": "user", "content": "And a third?"}]
    after = final(ask(engine, req(msgs, max_new_tokens=4))).stats
    own = len(engine._tokenize(engine.render_prompt(req(msgs[:-1]), generation_prompt=False)))
    assert after.reused_tokens == own and after.prefilled_tokens == after.prompt_tokens - own
    engine.reset()
    cold = final(ask(engine, req(msgs, max_new_tokens=4))).stats
    assert cold.reused_tokens == 0 and cold.prefilled_tokens == after.prompt_tokens
    # Usually 5-10x apart; only "faster" is asserted, as shared CI machines make timings noisy.
    assert after.ttft_s < cold.ttft_s, (after.ttft_s, cold.ttft_s)


def test_prompt_too_long_for_the_context(engine) -> None:
    from qwenchat.engines.llamacpp.engine import LlamaCppEngine

    # Also the load without llama.cpp's extra weight buffers, the AMX workaround (used on AMX machines).
    small = LlamaCppEngine(engine.path, n_ctx=128, n_threads=1, repack=False)
    try:
        assert small.context_window == 128 and small.repack is False
        end = final(ask(small, req([{"role": "user", "content": "word " * 150}])))
        assert end.finish_reason == "error" and "does not fit the 128-token context" in end.error
        # Room for a few tokens only: the answer stops at the context's end, as "length".
        prompt = [{"role": "user", "content": "Repeat: " + "word " * 95}]
        end = final(ask(small, req(prompt, max_new_tokens=100)))
        st = end.stats
        assert end.finish_reason == "length" and st.prompt_tokens + st.generated_tokens == 128, st
    finally:
        small.llm.close()


def test_cancel_during_prefill_keeps_the_computed_batches(engine) -> None:
    engine.reset()
    msgs = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "word " * 600}]
    cancel = threading.Event()
    chunks, progress = [], []
    t_cancel = None
    t0 = time.perf_counter()
    for chunk in engine.stream(req(msgs), cancel):
        chunks.append(chunk)
        if chunk.prefill and t_cancel is None:
            progress.append(chunk.prefill)
            cancel.set()  # Ctrl-C once the first batch is in
            t_cancel = time.perf_counter()
    batch_s = t_cancel - t0  # what one batch took here
    assert time.perf_counter() - t_cancel < 1.5 * batch_s + 0.5  # at most one more batch
    end = final(chunks)
    assert end.finish_reason == "interrupted" and end.stats.generated_tokens == 0
    assert progress[0][1] == end.stats.prompt_tokens - 1  # the first batch: the system prompt's segment
    again = final(ask(engine, req(msgs, max_new_tokens=2))).stats  # sending it again does not start over
    assert again.reused_tokens >= progress[0][0] > 0


@pytest.mark.parametrize("n", ["0", "-2"])
def test_threads_below_one_is_one_line_before_loading(n, out) -> None:
    from qwenchat.cli.engine import make_engine
    from qwenchat.cli.parser import parse

    assert make_engine(parse(["--demo", "--engine", "llama.cpp", "--threads", n]).model, out) is None
    text = out.buf.getvalue().strip()
    assert f"--threads must be 1 or more, not {n}" in text and len(text.splitlines()) == 1
