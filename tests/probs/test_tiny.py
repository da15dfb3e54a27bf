"""Recording token probabilities changes no token (a tiny random-weight Qwen2: text quality is irrelevant)."""

from __future__ import annotations

import threading

from qwenchat.engines.api import GenerationRequest
from qwenchat.engines.transformers.engine import TransformersEngine

SAMPLED = {"do_sample": True, "temperature": 0.9, "top_k": 50, "top_p": 0.95, "max_new_tokens": 12}


def tokens(engine, k: int, seed: int) -> tuple[str, list]:
    req = GenerationRequest([{"role": "user", "content": "hi"}], dict(SAMPLED), seed=seed, probs_k=k)
    chunks = list(engine.stream(req, threading.Event()))
    return "".join(c.text for c in chunks), [p for c in chunks for p in c.probs or []]


def test_same_seed_same_answer_with_probabilities_on_or_off(tiny_model):
    model, tok = tiny_model
    engine = TransformersEngine(model, tok, "tiny")
    for seed in (1, 2):
        off, none = tokens(engine, 0, seed)
        on, probs = tokens(engine, 5, seed)
        assert on == off and none == []
        assert len(probs) == 12 and tok.decode([p.id for p in probs]) == on
        # sampled: the distribution chosen from is recorded, and the chosen token is in it
        assert all(p.sampled_logprob is not None and p.sampled_logprob > float("-inf") for p in probs)


def test_token_texts_never_split_a_character(tiny_model):
    """Byte-level BPE cuts CJK characters and emoji into tokens that are not text on their own: the
    recorded texts join to the answer, and none of them is half a character (U+FFFD)."""
    from qwenchat.probs.record import WholeChars

    _, tok = tiny_model
    text = "naïve 你好, 龘 and 🙂🦜 done"
    ids = tok(text, add_special_tokens=False)["input_ids"]
    single = [tok.decode([i]) for i in ids]
    assert any("\ufffd" in t for t in single)  # the case exists in the real tokenizer
    chars = WholeChars(lambda held: tok.decode(held))
    texts = [chars.text(i) for i in ids]
    assert "".join(texts) == text
    assert not any("\ufffd" in t for t in texts)
    assert "" in texts  # a first half shows nothing; the token that completes it shows the character
