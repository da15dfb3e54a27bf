"""A real base model without a chat template (Gemma 3 270M, GGUF) in llama.cpp: it is not refused but run
as plain completion, with a notice; the prompt is the conversation's raw text after the model's BOS."""

from __future__ import annotations

from qwenchat.chat.session import ChatSession
from qwenchat.conversation.model import Conversation
from tests.support.recording import recorded


def test_a_base_model_runs_as_plain_completion_with_a_notice(gemma_engine):
    choice = gemma_engine.template_choice
    assert choice.plain and choice.notice.startswith("gemma-3-270m-q4_k_m.gguf has no chat template")
    with recorded(gemma_engine, gemma_engine.encode) as prompts:
        session = ChatSession(gemma_engine, conversation=Conversation(system=None))
        session.settings.apply("max_new_tokens=8 temperature=0")
        first = session.send("The capital of France is")
        second = session.send(" The capital of Italy is")
    assert first.kept and second.kept and first.text.strip()
    llm = gemma_engine.llm
    bos = llm.token_bos()
    text = "The capital of France is" + first.text + " The capital of Italy is"
    # Each turn continues the text: the second prompt is the first, its answer and the new text, as the
    # model's own tokenizer reads them after BOS (as a base model was trained).
    assert prompts[0] == [bos, *llm.tokenize(b"The capital of France is", add_bos=False)]
    assert prompts[1] == [bos, *llm.tokenize(text.encode(), add_bos=False, special=True)]
    assert gemma_engine.render_prompt(session.request()) == "<bos>" + text + second.text
