"""Ctrl-C during the vision encoder: how long after the cancel the transformers vision engine gets back.

A Qwen2-VL whose vision encoder has the real 7B model's block size (embed 1280, 16 heads, MLP x4; fewer
blocks: the time per block is what a cancel waits for at worst) and a tiny text model, random weights, with
the demo model's tokenizer. One 448x448 image (1,024 patches, 256 tokens). Measured in the same run: the
encoder's whole forward (the baseline: what a cancel would wait without the per-block check), the time per
block, and the seconds from a cancel set mid-encoder to the engine giving up (several tries). Prints JSON.

    python bench/vision_cancel.py [--blocks 4] [--side 448] [--tries 5]
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--blocks", type=int, default=4)
    ap.add_argument("--side", type=int, default=448)
    ap.add_argument("--tries", type=int, default=5)
    args = ap.parse_args()

    import numpy as np
    import torch
    from PIL import Image
    from transformers import AutoTokenizer, Qwen2VLConfig, Qwen2VLForConditionalGeneration
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    from qwenchat.engines.transformers.vision import VisionEngine, _Cancelled
    from qwenchat.images.load import read_image
    from qwenchat.models.demo import ensure_demo

    tok = AutoTokenizer.from_pretrained(ensure_demo())
    config = Qwen2VLConfig(
        text_config=dict(
            vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=1,
            num_attention_heads=4, num_key_value_heads=2,
            rope_parameters={"rope_type": "default", "rope_theta": 1e6, "mrope_section": [2, 3, 3]},
        ),
        vision_config=dict(depth=args.blocks, embed_dim=1280, hidden_size=64, num_heads=16, mlp_ratio=4),
        image_token_id=tok.convert_tokens_to_ids("<|image_pad|>"),
    )  # fmt: skip
    torch.manual_seed(0)
    model = Qwen2VLForConditionalGeneration(config).eval()
    engine = VisionEngine(model, tok, Qwen2VLImageProcessorPil(), "bench")
    path = Path("/tmp/qwenchat-bench-image.png")
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (args.side, args.side, 3), dtype=np.uint8)).save(path)
    ref = read_image(path, path.name)
    pv, grid = engine._pixels(ref, {})

    def encode(cancel: threading.Event) -> None:
        engine._features.clear()
        with torch.inference_mode():
            engine._image_features(ref, pv, grid, cancel)

    encode(threading.Event())  # warm-up
    t = time.perf_counter()
    encode(threading.Event())
    whole = time.perf_counter() - t
    per_block = whole / args.blocks
    waits = []
    for i in range(args.tries):
        cancel = threading.Event()
        delay = per_block * (0.5 + i / max(args.tries, 1))  # into some block, not at its edge
        timer = threading.Timer(delay, cancel.set)
        timer.start()
        t = time.perf_counter()
        try:
            encode(cancel)
            stopped = None  # finished before the cancel
        except _Cancelled:
            stopped = time.perf_counter()
        timer.join()
        if stopped is not None:
            waits.append(stopped - (t + delay))
    print(
        json.dumps(
            {
                "image": f"{args.side}x{args.side}",
                "patches": int(grid.prod()),
                "image_tokens": int(grid.prod()) // 4,
                "blocks": args.blocks,
                "threads": torch.get_num_threads(),
                "encoder_forward_s": round(whole, 3),
                "per_block_s": round(per_block, 3),
                "cancel_wait_s": [round(w, 3) for w in waits],
                "cancel_wait_max_s": round(max(waits), 3) if waits else None,
                "real_7b_encoder_estimate_s": round(per_block * 32, 2),
            }
        )
    )


if __name__ == "__main__":
    main()
