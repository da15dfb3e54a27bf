"""Tiny random-weight Qwen2-VL and Qwen2.5-VL with the demo model's real Qwen2.5 tokenizer (it has the vision
tokens) and their image processor at its defaults: the whole image path on a model that loads in a second."""

from __future__ import annotations

from pathlib import Path
from typing import Any

# The Qwen2-VL chat template (as its checkpoints ship it): a message's images as placeholders, then its text.
VL_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}<|im_start|>system\nYou are a helpful assistant."
    "<|im_end|>\n{% endif %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def build_tiny_vl(demo_dir: Path, family: str) -> tuple[Any, Any, Any]:
    """(model, tokenizer, image processor) of a two-layer `family` ("qwen2_vl" or "qwen2_5_vl"), float32."""
    import torch
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(demo_dir)
    tok.chat_template = VL_TEMPLATE
    ids = {
        name: tok.convert_tokens_to_ids(f"<|{name}|>") for name in ("image_pad", "video_pad", "vision_start")
    }
    text = dict(
        vocab_size=len(tok),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        rope_parameters={"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [2, 3, 3]},
        tie_word_embeddings=True,
    )
    if family == "qwen2_vl":
        from transformers import Qwen2VLConfig as Config
        from transformers import Qwen2VLForConditionalGeneration as Model

        vision = dict(depth=2, embed_dim=32, hidden_size=64, num_heads=2, mlp_ratio=2)
    else:
        from transformers import Qwen2_5_VLConfig as Config
        from transformers import Qwen2_5_VLForConditionalGeneration as Model

        vision = dict(
            depth=2, hidden_size=32, out_hidden_size=64, num_heads=2, intermediate_size=64,
            fullatt_block_indexes=[1], window_size=112,
        )  # fmt: skip
    config = Config(
        text_config=text,
        vision_config=vision,
        image_token_id=ids["image_pad"],
        video_token_id=ids["video_pad"],
        vision_start_token_id=ids["vision_start"],
        tie_word_embeddings=True,
    )
    torch.manual_seed(0)
    model = Model(config).eval()
    model.generation_config.eos_token_id = [tok.convert_tokens_to_ids("<|im_end|>"), tok.eos_token_id]
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    return model, tok, Qwen2VLImageProcessorPil()  # Qwen2.5-VL ships the same image processor


def save_tiny_vl(model: Any, tok: Any, image_processor: Any, path: Path) -> Path:
    """A model directory as checkpoints have it: config, weights, tokenizer (with the template), image
    processor config."""
    model.save_pretrained(path)
    image_processor.save_pretrained(path)
    tok.save_pretrained(path)
    return path
