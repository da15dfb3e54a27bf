"""The reasoning switch and budget on a tiny random-weight Qwen3 (built from a config here) with the demo
model's real tokenizer and a chat template written here that behaves as Qwen3's does: `enable_thinking`
false writes an empty think block, otherwise the prompt opens one (as the 2507 Thinking models do), and
earlier answers' thinking is dropped from the history. Text is noise; the token accounting is exact."""

from __future__ import annotations

import pytest

from qwenchat.commands.reasoning import set_budget, set_mode
from qwenchat.engines.api import GenerationRequest
from qwenchat.reasoning import CLOSE_TEXT, BudgetTracker, ReasoningError, parse_budget, template_variables

QWEN3_LIKE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message.role + '\\n' }}"
    "{%- if message.role == 'assistant' and '</think>' in message.content %}"
    "{{- message.content.split('</think>')[-1].lstrip('\\n') }}"
    "{%- else %}{{- message.content }}{%- endif %}"
    "{{- '<|im_end|>\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}"
    "{%- if enable_thinking is defined and enable_thinking is false %}{{- '<think>\\n\\n</think>\\n\\n' }}"
    "{%- else %}{{- '<think>\\n' }}{%- endif %}{%- endif %}"
)
GREEDY = {"do_sample": False, "max_new_tokens": 24}


@pytest.fixture(scope="module")
def qwen3(tiny_qwen3):
    model, tok = tiny_qwen3
    tok.chat_template = QWEN3_LIKE
    return model, tok


def session(qwen3, *, reuse: bool = True, settings=None):
    from qwenchat.chat.session import ChatSession
    from qwenchat.engines.transformers.engine import TransformersEngine
    from qwenchat.settings import Settings

    model, tok = qwen3
    engine = TransformersEngine(model, tok, "tiny-qwen3", reuse_cache=reuse)
    engine.prefill_chunk = 8  # short prompts still have whole chunks to keep
    s = ChatSession(engine, settings=Settings(dict(settings or GREEDY), schema=engine.settings_schema()))
    s.settings.seed = 1
    return s


# -- pure parts ----------------------------------------------------------------------------------
def test_template_variables_find_the_switch():
    assert "enable_thinking" in template_variables(QWEN3_LIKE)
    assert template_variables("{{ messages[0].content }}") == {"messages"}
    assert template_variables("{% if %}") is None and template_variables(None) is None


def test_budget_parsing_and_tracker():
    assert parse_budget("256") == 256 and parse_budget("off") is None and parse_budget(None) is None
    with pytest.raises(ReasoningError):
        parse_budget("lots")
    t = BudgetTracker(2, think_open=False)
    assert [t.step(p) for p in ["Hi ", "<thi", "nk>", "a", "b"]] == [False, False, False, True, False]
    assert (t.thinking, t.answer, t.inside) == (3, 2, True)
    for piece in ["</", "think>", "\n\nok"]:
        assert t.step(piece) is False
    assert (t.thinking, t.answer, t.closed) == (5, 3, True)


# -- the switch ----------------------------------------------------------------------------------
def test_switch_goes_to_the_template_and_template_shows_it(qwen3):
    s = session(qwen3)
    opens = s.engine.render_prompt(s.request(extra_user="x"))
    assert opens.endswith("<|im_start|>assistant\n<think>\n")
    assert set_mode(s, "off") is None
    assert s.request().template_kwargs == {"enable_thinking": False}
    assert s.engine.render_prompt(s.request(extra_user="x")).endswith("<think>\n\n</think>\n\n")
    set_mode(s, "on")
    assert s.engine.render_prompt(s.request(extra_user="x")) == opens
    set_mode(s, "auto")
    assert s.request().template_kwargs == {}
    with pytest.raises(ReasoningError):
        set_mode(s, "maybe")


def test_reasoning_off_turn_has_no_thinking_tokens(qwen3):
    s = session(qwen3)
    set_mode(s, "off")
    r = s.send("hello")
    assert r.stats.thinking_tokens == 0 and r.stats.generated_tokens > 0


# -- the budget ----------------------------------------------------------------------------------
@pytest.mark.parametrize("settings", [GREEDY, {"do_sample": True, "temperature": 1.0, "max_new_tokens": 24}])
def test_budget_closes_the_block_after_n_tokens_and_the_answer_goes_on(qwen3, settings):
    s = session(qwen3, settings=settings)
    tok = qwen3[1]
    set_budget(s, 5)
    r = s.send("think briefly")
    close = tok(CLOSE_TEXT, add_special_tokens=False)["input_ids"]
    # The forced tokens up to the one that completes the tag count as thinking, the rest as answer.
    head = next(k for k in range(1, len(close) + 1) if "</think>" in tok.decode(close[:k]))
    st = r.stats
    assert r.text.count("</think>") == 1 and CLOSE_TEXT.strip() in r.text
    assert st.thinking_tokens == 5 + head  # N generated, then the forced text up to the tag
    assert st.generated_tokens > st.thinking_tokens  # the answer went on after the block


def test_budget_is_refused_for_a_server():
    from qwenchat.chat.session import ChatSession
    from tests.support.fakes import FakeEngine

    s = ChatSession(FakeEngine())
    with pytest.raises(ReasoningError, match="in-process model"):
        set_budget(s, 10)
    set_budget(s, "off")
    assert s.reasoning.budget is None


# -- the kept cache when the template drops earlier thinking ----------------------------------------
def test_cache_cut_where_the_history_drops_thinking_and_answers_match_a_fresh_run(qwen3):
    kept, fresh = session(qwen3, reuse=True), session(qwen3, reuse=False)
    for s in (kept, fresh):
        set_budget(s, 6)
    prev_ids: list[int] = []
    kept_plan = None
    for text in ["first question", "second one", "and a third"]:
        request = kept.request(extra_user=text)
        ids = kept.engine.encode(request)
        a, b = kept.send(text), fresh.send(text)
        assert a.text == b.text and a.stats.generated_tokens == b.stats.generated_tokens
        assert b.stats.reused_tokens == 0
        if prev_ids:
            prev_len = len(prev_ids)
            # The previous prompt ended in "<think>\n"; this one has the answer without its thinking there,
            # so the two part where that block began, inside the segment of the last user message: the cache
            # keeps the segments before it (everything up to the answer before, none on the second turn).
            opener = len(kept.engine._tokenize("<think>\n"))
            common = prev_len - opener
            assert ids[:common] == prev_ids[:common] and ids[common] != prev_ids[common]
            # What the schedule keeps: the chunks both prompts compute alike, over tokens they share.
            alike = 0
            prev_spans, spans = kept_plan.spans, kept.engine.plan(request, ids).spans
            for before, now in zip(prev_spans, spans, strict=False):
                if before != now or now[1] > common:
                    break
                alike = now[1]
            assert a.stats.reused_tokens == alike < common
            if len(request.messages) > 3:  # a third turn keeps everything up to the first answer's end
                first = kept.engine.render_prompt(GenerationRequest(request.messages[:-3]), False)
                assert alike >= len(kept.engine._tokenize(first)) > 0
        assert "</think>" in a.text
        prev_ids, kept_plan = ids, kept.engine.plan(request, ids)
    history = kept.engine.render_prompt(kept.request(extra_user="x"))
    assert history.count("</think>") == 0  # earlier thinking is gone from the prompt


def test_demo_template_has_no_switch(qwen3, demo_dir):
    """The demo model's own template (Qwen2.5) reads no enable_thinking: one line says so, nothing is sent."""
    from transformers import AutoTokenizer

    from qwenchat.chat.session import ChatSession
    from qwenchat.engines.transformers.engine import TransformersEngine

    engine = TransformersEngine(qwen3[0], AutoTokenizer.from_pretrained(demo_dir), "demo-template")
    s = ChatSession(engine)
    line = set_mode(s, "off")
    assert line == (
        "this model's chat template has no reasoning switch (no enable_thinking variable): "
        "reasoning off changes nothing"
    )
    assert s.request().template_kwargs == {}


def test_stats_show_thinking_and_answer_apart(out):
    from qwenchat.engines.api import TurnStats

    out.stats(TurnStats(prompt_tokens=10, generated_tokens=20, thinking_tokens=7))
    out.stats(TurnStats(prompt_tokens=10, generated_tokens=20, thinking_tokens=0))
    lines = out.buf.getvalue().splitlines()
    assert "20 tok · thinking 7 · answer 13 · stop" in lines[0] and "thinking" not in lines[1]
