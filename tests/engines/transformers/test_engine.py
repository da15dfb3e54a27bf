"""The transformers engine on a tiny random Qwen2 (real tokenizer) and on the real demo model."""

from __future__ import annotations

import threading

import pytest
import torch

from qwenchat.engines.api import GenerationRequest
from qwenchat.engines.prefix_cache import common_prefix_len
from qwenchat.engines.transformers.engine import TransformersEngine

GREEDY = {"do_sample": False, "max_new_tokens": 12}

# A template that rewrites history: only the system prompt and the last three messages are shown,
# so earlier turns fall out of the prompt and the cached prefix stops matching.
WINDOW_TEMPLATE = (
    "{% for m in messages %}{% if m.role == 'system' or loop.index0 >= messages|length - 3 %}"
    "<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def run(engine, messages, settings=GREEDY, cancel=None):
    chunks = list(engine.stream(GenerationRequest(messages, settings), cancel or threading.Event()))
    return "".join(c.text for c in chunks), chunks[-1]


def converse(engine, turns=10, settings=GREEDY, between=None):
    msgs = [{"role": "system", "content": "You are a helpful assistant."}]
    answers, finals = [], []
    for i in range(turns):
        msgs.append({"role": "user", "content": f"question {i}: tell me about the number {i * 7}"})
        text, final = run(engine, msgs, settings)
        msgs.append({"role": "assistant", "content": text})
        answers.append(text)
        finals.append(final)
        if between:
            between(i, engine, msgs)
    return answers, finals


@pytest.fixture
def tiny_engines(tiny_model):
    model, tok = tiny_model
    return TransformersEngine(model, tok, "tiny", reuse_cache=True), TransformersEngine(
        model, tok, "tiny", reuse_cache=False
    )


def test_common_prefix_len():
    assert common_prefix_len([1, 2, 3], [1, 2, 4]) == 2
    assert common_prefix_len([], [1]) == 0
    assert common_prefix_len([1, 2], [1, 2, 3]) == 2


def rendered_len(engine, messages) -> int:
    """The conversation rendered without a generation prompt: where the assistant header or the next message
    starts, a segment bound of the schedule."""
    return len(engine._tokenize(engine.render_prompt(GenerationRequest(messages), generation_prompt=False)))


def test_cache_reuse_gives_identical_greedy_answers(tiny_engines):
    reuse, fresh = tiny_engines
    a, finals = converse(reuse)
    b, _ = converse(fresh)
    assert a == b
    assert finals[0].stats.reused_tokens == 0
    assert all(f.stats.prefilled_tokens == f.stats.prompt_tokens - f.stats.reused_tokens for f in finals)


def test_a_turn_keeps_the_last_prompt_but_its_last_token(tiny_model):
    model, tok = tiny_model
    engine = TransformersEngine(model, tok, "tiny")
    msgs = [{"role": "system", "content": "You are a helpful assistant."}]
    prev = None
    for i, answer in enumerate(["Sure, seven.", "It is prime.", "Fourteen is not."]):
        msgs.append({"role": "user", "content": f"question {i}: tell me about the number {i * 7}"})
        _, end = run(engine, msgs)
        if prev is not None:
            # Without background work between turns, a turn keeps the last prompt but its last token, which
            # generate computed: that token (alone, as the schedule says) and the answer, decoded a token at
            # a time, are computed again before this turn's own message.
            assert end.stats.reused_tokens == prev.stats.prompt_tokens - 1
        prev = end
        msgs.append({"role": "assistant", "content": answer})  # an answer that starts a new token


def test_warm_leaves_a_turn_its_own_message_only(tiny_model):
    model, tok = tiny_model
    engine = TransformersEngine(model, tok, "tiny")
    msgs = [{"role": "system", "content": "You are a helpful assistant."}, {"role": "user", "content": "hi"}]
    text, first = run(engine, msgs)
    msgs.append({"role": "assistant", "content": text})
    probes = [GenerationRequest([*msgs, {"role": "user", "content": p}], GREEDY) for p in ("a", "\n\n1. ")]
    assert engine.warm(probes)
    engine.idle()
    assert not engine.warm(probes)  # done: nothing more to compute
    msgs.append({"role": "user", "content": "and now?"})
    warmed_text, warmed = run(engine, msgs)
    own = rendered_len(engine, msgs[:-1])  # the new message starts where the last answer's segment ends
    assert warmed.stats.reused_tokens == own
    fresh = TransformersEngine(model, tok, "tiny", reuse_cache=False)
    fresh_text, _ = run(fresh, msgs)
    assert warmed_text == fresh_text


def test_identical_after_reset_and_cancel(tiny_engines):
    reuse, fresh = tiny_engines

    def disturb(i, engine, msgs):
        if i == 3:
            engine.reset()  # what :clh does to the engine
        if i == 5:  # a turn cancelled at once, then dropped from the conversation
            cancel = threading.Event()
            stream = engine.stream(
                GenerationRequest(msgs + [{"role": "user", "content": "x"}], GREEDY), cancel
            )
            next(stream)
            cancel.set()
            final = list(stream)[-1]
            assert final.finish_reason == "interrupted"

    a, finals = converse(reuse, between=disturb)
    b, _ = converse(fresh)
    assert a == b
    assert finals[6].stats.reused_tokens > 0  # after the cancel, the prefix is still reused


def test_history_rewriting_template(tiny_model):
    model, tok = tiny_model
    tok2 = type(tok).from_pretrained(tok.name_or_path) if tok.name_or_path else tok
    tok2.chat_template = WINDOW_TEMPLATE
    reuse = TransformersEngine(model, tok2, "tiny")
    fresh = TransformersEngine(model, tok2, "tiny", reuse_cache=False)
    a, finals = converse(reuse, turns=6)
    b, _ = converse(fresh, turns=6)
    assert a == b
    # the window moved, so only the system prompt part could be reused
    assert all(f.stats.reused_tokens < f.stats.prompt_tokens for f in finals[1:])


def test_cancel_stops_within_a_step(tiny_model):
    model, tok = tiny_model
    engine = TransformersEngine(model, tok, "tiny")
    cancel = threading.Event()
    stream = engine.stream(
        GenerationRequest(
            [{"role": "user", "content": "hi"}],
            {"do_sample": False, "max_new_tokens": 500, "min_new_tokens": 500},
        ),
        cancel,
    )
    first = next(stream)
    cancel.set()
    rest = list(stream)
    final = rest[-1]
    assert final.finish_reason == "interrupted"
    assert first.tokens <= final.stats.generated_tokens <= first.tokens + 3


def test_length_and_stop_reasons(tiny_model):
    model, tok = tiny_model
    engine = TransformersEngine(model, tok, "tiny")
    _, final = run(
        engine,
        [{"role": "user", "content": "hi"}],
        {"do_sample": False, "max_new_tokens": 5, "min_new_tokens": 5},
    )
    assert final.finish_reason == "length" and final.stats.generated_tokens == 5


def test_a_stop_string_is_matched_in_the_answer_only(tiny_model):
    # The prompt ends "<|im_start|>assistant\n": generate's own stop_strings matched the whole sequence, so
    # a stop string spanning that end and the answer's start ended the answer at its first token.
    model, tok = tiny_model
    engine = TransformersEngine(model, tok, "tiny")
    msgs = [{"role": "user", "content": "hi"}]
    full, _ = run(engine, msgs, {"do_sample": False, "max_new_tokens": 6})
    first = full[:1]
    assert first  # the random model writes something
    text, final = run(
        engine, msgs, {"do_sample": False, "max_new_tokens": 6, "stop_strings": ["assistant\n" + first]}
    )
    assert text == full and final.finish_reason == "length" and final.stats.generated_tokens == 6
    text, final = run(engine, msgs, {"do_sample": False, "max_new_tokens": 6, "stop_strings": [full[1:3]]})
    assert text == full[: full.index(full[1:3])] and final.finish_reason == "stop"


def test_error_in_generate_is_one_line_and_engine_survives(tiny_model, monkeypatch):
    model, tok = tiny_model
    engine = TransformersEngine(model, tok, "tiny")
    run(engine, [{"role": "user", "content": "hi"}])

    def boom(*a, **k):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(model, "generate", boom)
    text, final = run(engine, [{"role": "user", "content": "hi"}])
    assert final.finish_reason == "error" and "out of memory" in final.error and "\n" not in final.error
    monkeypatch.undo()
    text, final = run(engine, [{"role": "user", "content": "hi"}])
    assert final.finish_reason in ("stop", "length") and final.stats.reused_tokens == 0


def test_template_error_is_reported(tiny_model):
    model, tok = tiny_model
    tok2 = type(tok).from_pretrained(tok.name_or_path)
    tok2.chat_template = "{{ raise_exception('System role not supported') }}"
    engine = TransformersEngine(model, tok2, "tiny")
    _, final = run(engine, [{"role": "user", "content": "hi"}])
    assert final.finish_reason == "error" and "System role not supported" in final.error


def test_incremental_decoding_matches_full_decode(tiny_model):
    model, tok = tiny_model
    engine = TransformersEngine(model, tok, "tiny")
    text = "Hello 世界! 🎉 naïve café — ¿qué? def f(x):\n    return x ** 2\n"
    ids = tok(text, add_special_tokens=False)["input_ids"]
    step = engine._new_decoder()
    assert "".join(step(t) for t in ids) == tok.decode(ids, skip_special_tokens=True) == text


def test_demo_answers_a_coding_question(demo_loaded):
    engine = TransformersEngine(demo_loaded.model, demo_loaded.tokenizer, demo_loaded.name)
    text, final = run(
        engine,
        [
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": "Write a Python function that adds two numbers."},
        ],
        {"do_sample": False, "max_new_tokens": 48},
    )
    assert "def " in text
    assert final.stats.generated_tokens > 10 and final.stats.decode_tps > 0


def test_demo_greedy_same_with_and_without_reuse(demo_loaded):
    reuse = TransformersEngine(demo_loaded.model, demo_loaded.tokenizer, "demo")
    fresh = TransformersEngine(demo_loaded.model, demo_loaded.tokenizer, "demo", reuse_cache=False)
    reuse.prefill_chunk = fresh.prefill_chunk = 32  # these short prompts still have whole chunks to keep
    settings = {"do_sample": False, "max_new_tokens": 16}
    a, fa = converse(reuse, turns=3, settings=settings)
    b, _ = converse(fresh, turns=3, settings=settings)
    assert a == b and fa[-1].stats.reused_tokens > 0


def test_stats_are_sane(tiny_model):
    model, tok = tiny_model
    engine = TransformersEngine(model, tok, "tiny")
    engine.prefill_chunk = 8  # a short prompt still has whole chunks to keep
    msgs = [{"role": "user", "content": "hello"}]
    _, first = run(engine, msgs, {"do_sample": False, "max_new_tokens": 6, "min_new_tokens": 6})
    s = first.stats
    assert s.prompt_tokens == s.reused_tokens + s.prefilled_tokens and s.reused_tokens == 0
    assert s.generated_tokens == 6 and s.finish_reason == "length"
    assert 0 < s.ttft_s < s.total_s and s.decode_tps > 0 and s.prefill_tps > 0
    assert s.peak_gpu_mem_bytes is None  # CPU
    msgs += [{"role": "assistant", "content": "hi"}, {"role": "user", "content": "again"}]
    _, second = run(engine, msgs)
    assert second.stats.reused_tokens > 0 and second.stats.prompt_tokens > s.prompt_tokens


def test_demo_stop_strings_end_the_answer_before_them(demo_loaded):
    engine = TransformersEngine(demo_loaded.model, demo_loaded.tokenizer, demo_loaded.name)
    msgs = [{"role": "user", "content": "Count from 1 to 10, separated by commas."}]
    full, final = run(engine, msgs, {"do_sample": False, "max_new_tokens": 40})
    assert "5" in full and final.error is None
    text, final = run(engine, msgs, {"do_sample": False, "max_new_tokens": 40, "stop_strings": ["5"]})
    assert final.error is None and final.finish_reason == "stop"
    assert text == full[: full.index("5")]  # the same greedy answer, cut before the stop string
    assert final.stats.generated_tokens < 40


def test_cancel_during_prefill_keeps_the_computed_chunks(tiny_model):
    model, tok = tiny_model
    engine = TransformersEngine(model, tok, "tiny")
    engine.prefill_chunk = 16
    msgs = [{"role": "user", "content": "word " * 400}]
    cancel = threading.Event()
    progress, chunks = [], []
    for chunk in engine.stream(GenerationRequest(msgs, GREEDY), cancel):
        chunks.append(chunk)
        if chunk.prefill:
            progress.append(chunk.prefill)
            cancel.set()  # Ctrl-C once the first chunk is in
    prompt = chunks[-1].stats.prompt_tokens
    assert chunks[-1].finish_reason == "interrupted" and chunks[-1].stats.generated_tokens == 0
    assert progress[0] == (16, prompt - 1) and len(progress) < prompt // 16 / 2  # stopped between chunks
    _, again = run(engine, msgs)  # sending it again does not start over
    assert again.stats.reused_tokens >= 16 and again.stats.reused_tokens % 16 == 0


def test_fingerprint_names_the_weights_by_content_and_the_setup(tiny_model, tiny_dir):
    import hashlib
    from importlib import metadata

    model, tok = tiny_model
    fp = TransformersEngine(model, tok, "tiny", weights=tiny_dir).fingerprint()
    weights = sorted(tiny_dir.glob("*.safetensors"))
    expected = hashlib.sha256(
        "".join(f"{f.name} {hashlib.sha256(f.read_bytes()).hexdigest()}\n" for f in weights).encode()
    ).hexdigest()
    assert fp["weights_sha256"] == expected and fp["engine"] == "transformers"
    assert fp["dtype"] == str(model.dtype).removeprefix("torch.") and fp["device"] == "cpu"
    assert fp["threads"] == torch.get_num_threads() and fp["torch"] == metadata.version("torch")
    assert fp["transformers"] and fp["cpu"] and fp["adapter"] is None
    assert TransformersEngine(model, tok, "tiny").fingerprint()["weights_sha256"] is None  # nothing local
