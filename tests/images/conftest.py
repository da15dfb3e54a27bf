"""Image files made here (noise, so two are never alike) and the tiny vision models, built once."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("PIL", reason="images need Pillow: pip install 'qwenchat[vision]'")


def make_image(path: Path, seed: int, size: tuple[int, int] = (80, 60), fmt: str | None = None) -> Path:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(path, format=fmt)
    return path


@pytest.fixture
def images(tmp_path) -> dict[str, Path]:
    """Two PNGs unlike each other, and a JPEG, a WebP and a GIF."""
    return {
        "a": make_image(tmp_path / "a.png", 1),
        "b": make_image(tmp_path / "b.png", 2),
        "jpeg": make_image(tmp_path / "c.jpg", 3),
        "webp": make_image(tmp_path / "d.webp", 4),
        "gif": make_image(tmp_path / "e.gif", 5),
    }


@pytest.fixture(scope="session")
def tiny_vl(demo_dir):
    """A tiny Qwen2-VL (tests/images/tiny_vl.py): (model, tokenizer, image processor)."""
    from tests.images.tiny_vl import build_tiny_vl

    return build_tiny_vl(demo_dir, "qwen2_vl")


@pytest.fixture(scope="session")
def tiny_vl25(demo_dir):
    """A tiny Qwen2.5-VL, as tiny_vl."""
    from tests.images.tiny_vl import build_tiny_vl

    return build_tiny_vl(demo_dir, "qwen2_5_vl")


@pytest.fixture(scope="session")
def tiny_vl_dir(tiny_vl, tmp_path_factory) -> Path:
    """The tiny Qwen2-VL saved once as a model directory, for load() and `-c DIR`; read-only."""
    from tests.images.tiny_vl import save_tiny_vl

    return save_tiny_vl(*tiny_vl, tmp_path_factory.mktemp("tiny-vl"))


def vision_engine(parts, chunk: int = 8):
    """A VisionEngine on (model, tokenizer, image processor), with a small prefill chunk so the images fall
    inside the schedule's chunks."""
    from qwenchat.engines.transformers.vision import VisionEngine

    model, tok, processor = parts
    engine = VisionEngine(model, tok, processor, "tiny-vl")
    engine.prefill_chunk = chunk
    return engine
