"""The reasoning switch, budget and tools through the llama.cpp engine: its Jinja template path gets
enable_thinking and tools as transformers' does, and the budget closes the block inside one turn there too
(the demo GGUF, with the Qwen3-like template of test_reasoning.py put in place of its own)."""

from __future__ import annotations

import threading

from qwenchat.engines.api import GenerationRequest
from qwenchat.engines.llamacpp.template import ChatTemplate
from qwenchat.reasoning import CLOSE_TEXT, template_variables
from tests.test_reasoning import QWEN3_LIKE
from tests.tools.test_tools import WEATHER


def test_template_path_takes_the_switch_and_the_tools(demo_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(demo_dir)
    msgs = [{"role": "user", "content": "hi"}]
    ours = ChatTemplate(tok.chat_template, "", "<|endoftext|>")
    assert ours.render(msgs, tools=[WEATHER]) == tok.apply_chat_template(
        msgs, tools=[WEATHER], tokenize=False, add_generation_prompt=True
    )
    qwen3 = ChatTemplate(QWEN3_LIKE, "", "<|endoftext|>")
    assert qwen3.render(msgs, enable_thinking=False).endswith("<think>\n\n</think>\n\n")
    assert qwen3.render(msgs).endswith("<think>\n")


LLAMACPP_OPTIONS = {"prefill_chunk": 8}  # the llamacpp_engine fixture's: short prompts have whole chunks


def test_budget_in_llamacpp_and_answers_match_without_cache_reuse(llamacpp_engine):
    engine = llamacpp_engine  # the demo GGUF, one per module (conftest)
    assert "enable_thinking" not in template_variables(engine.template_source)  # the GGUF's own: Qwen2.5
    own, own_source = engine.template, engine.template_source
    engine.template = ChatTemplate(QWEN3_LIKE, own.bos_token, own.eos_token)
    engine.template_source = QWEN3_LIKE
    try:
        runs = []
        for reuse in (True, False):
            engine.reset()
            engine.reuse_cache = reuse
            messages, texts = [{"role": "user", "content": "Name a colour."}], []
            for follow in ("And another?", None):
                request = GenerationRequest(
                    messages=list(messages),
                    settings={"do_sample": False, "max_new_tokens": 28},
                    seed=1,
                    thinking_budget=4,
                )
                chunks = list(engine.stream(request, threading.Event()))
                text = "".join(c.text for c in chunks)
                stats = chunks[-1].stats
                close = engine._tokenize(CLOSE_TEXT)
                pieces = [engine.llm.detokenize(close[:k]).decode() for k in range(1, len(close) + 1)]
                head = next(k for k, p in enumerate(pieces, start=1) if "</think>" in p)
                if "</think>" in text.split(CLOSE_TEXT.strip())[0]:  # the model closed it itself, early
                    assert stats.thinking_tokens <= 4
                else:
                    assert stats.thinking_tokens == 4 + head and CLOSE_TEXT.strip() in text
                texts.append(text)
                messages += [{"role": "assistant", "content": text}]
                if follow:
                    messages.append({"role": "user", "content": follow})
            runs.append(texts)
        assert runs[0] == runs[1]
    finally:
        engine.template, engine.template_source, engine.reuse_cache = own, own_source, True
