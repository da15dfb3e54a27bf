"""The transformers engine with images, on tiny random-weight Qwen2-VL and Qwen2.5-VL (text is noise; what is
checked is the path: the prompt's image tokens, generation, reproducibility and the cache keyed by image)."""

from __future__ import annotations

import threading

import pytest
import torch

from qwenchat.engines.api import GenerationRequest, SupportsImages
from qwenchat.images.load import read_image
from tests.images.conftest import vision_engine

SAMPLED = {"do_sample": True, "temperature": 1.0, "max_new_tokens": 12}


@pytest.fixture(params=["tiny_vl", "tiny_vl25"])
def parts(request):
    return request.getfixturevalue(request.param)


def _request(ref, text="what is in it?", settings=None, seed=5, history=()):
    messages = [*history, {"role": "user", "content": text, "images": [ref] if ref else []}]
    return GenerationRequest(messages=messages, settings=dict(settings or SAMPLED), seed=seed)


def _run(engine, request, cancel=None):
    chunks = list(engine.stream(request, cancel or threading.Event()))
    last = chunks[-1]
    assert last.error is None, last.error
    return "".join(c.text for c in chunks), last.stats


def test_the_prompt_has_one_image_token_per_merged_patch(parts, images):
    engine = vision_engine(parts)
    assert isinstance(engine, SupportsImages) and engine.takes_images
    assert engine.context_window == 4096  # from the text config: the context check applies
    ref = read_image(images["a"], "a.png")
    request = _request(ref)
    assert "<|vision_start|><|image_pad|><|vision_end|>what is in it?" in engine.render_prompt(request)
    ids = engine.encode(request)
    n = engine.image_tokens(ref, request.settings)
    assert n == sum(1 for t in ids if t < 0) > 1
    real = engine._model_ids(ids)
    assert real.count(engine.image_token_id) == n


def test_answers_match_the_models_own_generate(parts, images):
    """The chunked prefill with the image's features and 3-D positions gives what transformers' generate
    gives from the processor's inputs, one shot."""
    model, tok, processor = parts
    engine = vision_engine(parts)
    ref = read_image(images["a"], "a.png")
    request = _request(ref)  # sampled: greedy noise is one token over and over
    ids = engine.encode(request)
    real = torch.tensor([engine._model_ids(ids)])
    from PIL import Image

    pix = processor(images=[Image.open(images["a"]).convert("RGB")], return_tensors="pt")
    torch.manual_seed(5)
    greedy = model.generate(
        input_ids=real,
        attention_mask=torch.ones_like(real),
        pixel_values=pix["pixel_values"],
        image_grid_thw=pix["image_grid_thw"],
        mm_token_type_ids=(real == engine.image_token_id).int(),
        generation_config=engine._generation_config(request.settings),  # the same sampling
    )
    expected = tok.decode(greedy[0, real.shape[1] :], skip_special_tokens=True)
    text, _ = _run(engine, request)
    assert text == expected and len(set(text)) > 3


def test_same_tokens_with_the_cache_and_from_scratch(parts, images):
    engine = vision_engine(parts)
    ref = read_image(images["a"], "a.png")
    first, stats1 = _run(engine, _request(ref))
    again, stats2 = _run(engine, _request(ref))  # a retry: the whole prompt but its last token is kept
    assert stats1.reused_tokens == 0 and stats2.reused_tokens == stats2.prompt_tokens - 1
    engine.reset()
    scratch, _ = _run(engine, _request(ref))
    assert first == again == scratch and first


def test_another_image_recomputes_from_the_image_on(parts, images):
    engine = vision_engine(parts, chunk=8)
    a, b = read_image(images["a"], "a.png"), read_image(images["b"], "b.png")
    with_a, _ = _run(engine, _request(a))
    ids_b = engine.encode(_request(b))
    image_start = next(i for i, t in enumerate(ids_b) if t < 0)
    with_b, stats = _run(engine, _request(b))
    assert stats.reused_tokens <= image_start  # nothing of image a's keys and values is kept for b
    assert stats.reused_tokens > image_start - 8  # only the chunk the image starts in is computed again
    engine.reset()
    scratch_b, _ = _run(engine, _request(b))
    assert with_b == scratch_b
    assert with_a != with_b  # the image reaches the answer (sampled noise diverges within 12 tokens)


def test_a_later_turn_keeps_the_image_in_the_cache(parts, images):
    engine = vision_engine(parts, chunk=8)
    a = read_image(images["a"], "a.png")
    answer, _ = _run(engine, _request(a))
    history = [
        {"role": "user", "content": "what is in it?", "images": [a]},
        {"role": "assistant", "content": answer},
    ]
    follow = _request(None, "and the colours?", history=history)
    ids = engine.encode(follow)
    image_end = max(i for i, t in enumerate(ids) if t < 0) + 1
    second, stats = _run(engine, follow)
    assert stats.reused_tokens >= image_end > 0  # the image's positions came from the cache
    engine.reset()
    assert _run(engine, follow)[0] == second


def test_ctrl_c_in_the_vision_encoder_stops_the_turn(parts, images):
    """A cancel set while the encoder runs stops it at its next block: the turn ends interrupted."""
    engine = vision_engine(parts)
    ref = read_image(images["b"], "b.png")
    cancel = threading.Event()
    blocks = engine.model.model.visual.blocks
    hook = blocks[0].register_forward_hook(lambda *a: cancel.set())  # Ctrl-C during the first block
    try:
        chunks = list(engine.stream(_request(ref), cancel))
    finally:
        hook.remove()
    assert chunks[-1].finish_reason == "interrupted" and not "".join(c.text for c in chunks)
    assert _run(engine, _request(ref))[0]  # the engine goes on


def test_pixel_budget_settings_change_the_image_tokens(tiny_vl, images):
    engine = vision_engine(tiny_vl)
    from qwenchat.images.load import read_image as read

    big = read(images["a"].parent / "a.png", "a.png")
    schema = engine.settings_schema()
    assert schema.check("max_pixels", 28 * 28 * 4) == 28 * 28 * 4
    few = engine.encode(_request(big, settings={"max_pixels": 28 * 28 * 4}))
    many = engine.encode(_request(big, settings={"min_pixels": 28 * 28 * 64}))
    assert sum(t < 0 for t in few) < sum(t < 0 for t in many)
    assert engine.image_tokens(big, {"max_pixels": 28 * 28 * 4}) == sum(t < 0 for t in few)


def test_load_detects_a_vision_model_from_its_config(tiny_vl_dir):
    from qwenchat.models.loader import LoadOptions, load, resolve

    loaded = load(resolve(str(tiny_vl_dir)), LoadOptions(cpu_only=True, dtype="float32"))
    assert loaded.processor is not None
    assert type(loaded.model).__name__ == "Qwen2VLForConditionalGeneration"
    assert "<|image_pad|>" in loaded.tokenizer.chat_template


def test_a_session_with_a_pixel_budget_saves_and_loads(tiny_vl, tmp_path):
    from qwenchat.chat.session import ChatSession
    from qwenchat.conversation.store import load_file

    session = ChatSession(vision_engine(tiny_vl))
    session.settings.update({"max_pixels": 50_000})
    path = tmp_path / "s.json"
    session.save(path)
    assert load_file(path).settings["max_pixels"] == 50_000


def test_the_same_image_at_another_pixel_budget_is_another_key(tiny_vl, images):
    engine = vision_engine(tiny_vl)
    ref = read_image(images["a"], "a.png")
    small = engine.encode(_request(ref, settings={"max_pixels": 28 * 28 * 4}))
    large = engine.encode(_request(ref, settings={"min_pixels": 28 * 28 * 64}))
    first = next(i for i, t in enumerate(small) if t < 0)
    assert small[first] != large[first]  # the cache cannot keep one's image positions for the other


def test_a_chat_with_an_image_is_reproducible_across_retry_resume_and_no_cache(tiny_vl, images, tmp_path):
    """first answer == :retry with its seed == the same turn without a kept cache; the next turn after a
    save and load (a fresh engine) == the next turn in the chat that went on."""
    from qwenchat.chat.session import ChatSession
    from qwenchat.conversation.store import load_file

    def chat(engine):
        session = ChatSession(engine)
        session.settings.update({"do_sample": True, "temperature": 1.0, "max_new_tokens": 8})
        session.settings.seed = 11
        return session

    session = chat(vision_engine(tiny_vl))
    session.attach_images([read_image(images["a"], "a.png")])
    first = session.send("what is it?").text
    assert session.retry(11).text == first
    path = tmp_path / "s.json"
    session.save(path)
    going_on = session.send("and then?").text

    uncached = vision_engine(tiny_vl)
    uncached.reuse_cache = False
    resumed = chat(uncached)
    resumed.adopt(load_file(path))
    assert resumed.conversation.messages[-1].content == first
    assert resumed.send("and then?").text == going_on
