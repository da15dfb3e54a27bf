"""Model options: LoRA adapters, quantization, attention, remote code, offline use (qwenchat.models.loader).

Everything runs on the CPU without network: a random-weight two-layer Qwen2 (the `tiny_model` fixture) is
saved to a temporary directory so `load()` reads it like any local model, adapters are made with peft on
the spot, and the hubs are replaced by stand-ins. The adapter tests skip without peft (`qwenchat[lora]`);
8-bit/4-bit and flash-attention can only be checked for their error paths here (no GPU).
"""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from qwenchat.engines.api import GenerationRequest
from qwenchat.engines.transformers.engine import TransformersEngine
from qwenchat.models import LoadError, hub, loader
from qwenchat.models.loader import LoadOptions

HUB_ID = "Qwen/Qwen2-7B-Instruct"
GREEDY = {"do_sample": False, "max_new_tokens": 8}
F32 = {"cpu_only": True, "dtype": "float32"}


# --- fixtures ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def base_dir(tiny_dir) -> Path:
    """The tiny model as a local model directory (conftest: saved once for the session)."""
    return tiny_dir


def _make_adapter(base_dir: Path, out: Path, seed: int, **lora: object) -> Path:
    """A LoRA adapter whose B matrices are random (fresh ones are zero and change nothing)."""
    peft = pytest.importorskip("peft", reason="LoRA adapters need peft (pip install 'qwenchat[lora]')")
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    options = {"r": 4, "lora_alpha": 8, "target_modules": ["q_proj", "v_proj"], "task_type": "CAUSAL_LM"}
    peft_model = peft.get_peft_model(model, peft.LoraConfig(**{**options, **lora}))
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, weight in peft_model.named_parameters():
            if "lora_B" in name:
                weight.normal_(0.0, 0.5)
    peft_model.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def adapters(base_dir, tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("adapters")
    return (
        _make_adapter(base_dir, root / "first", seed=1),
        _make_adapter(base_dir, root / "second", seed=2, target_modules=["k_proj", "o_proj"]),
    )


@pytest.fixture
def no_loading(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any download or model load fails the test: the error must come before them."""

    def boom(*args: object, **kwargs: object) -> None:
        raise AssertionError("nothing should be downloaded or loaded")

    monkeypatch.setattr(loader, "download", boom)
    monkeypatch.setattr(loader, "_apply_adapters", boom)


@pytest.fixture
def peft_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    """For checks that come after the peft check, on machines without the lora extra too."""
    monkeypatch.setattr(loader, "_peft_available", lambda: True)


def _load(path: Path, **options: object) -> loader.LoadedModel:
    return loader.load(loader.resolve(str(path)), LoadOptions(**{**F32, **options}))


def _greedy(loaded: loader.LoadedModel, new_tokens: int = 10) -> list[int]:
    inputs = loaded.tokenizer.apply_chat_template(
        [{"role": "user", "content": "Tell me about LoRA."}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )
    with torch.no_grad():
        out = loaded.model.generate(**inputs, max_new_tokens=new_tokens, do_sample=False)
    return out[0, inputs["input_ids"].shape[1] :].tolist()


def _one_line_error(info: pytest.ExceptionInfo[LoadError]) -> str:
    message = str(info.value)
    assert message and "\n" not in message
    return message


# --- LoRA adapters -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def with_first(base_dir: Path, adapters: tuple[Path, Path]) -> loader.LoadedModel:
    """The base with the first adapter, loaded once: tokenizer loading dominates every load here."""
    return _load(base_dir, adapters=[str(adapters[0])])


def test_adapter_changes_output_and_merging_keeps_it(
    tiny_model, base_dir: Path, adapters: tuple[Path, Path], with_first: loader.LoadedModel
) -> None:
    merged = _load(base_dir, adapters=[str(adapters[0])], merge_adapter=True)
    base = loader.LoadedModel(tiny_model[0], tiny_model[1], "base", "cpu", "float32", with_first.source)

    assert type(with_first.model).__name__.startswith("Peft")
    assert not type(merged.model).__name__.startswith("Peft")  # merge_and_unload gave the plain model back
    assert (with_first.adapters, merged.adapters) == (["first"], ["first (merged)"])
    assert (with_first.dtype, with_first.device) == ("float32", "cpu")
    assert not with_first.model.training
    assert _greedy(with_first) != _greedy(base)
    assert _greedy(with_first) == _greedy(merged)


def test_several_adapters_are_active_together(
    base_dir: Path, adapters: tuple[Path, Path], with_first: loader.LoadedModel
) -> None:
    both = _load(base_dir, adapters=[str(a) for a in adapters])
    merged = _load(base_dir, adapters=[str(a) for a in adapters], merge_adapter=True)

    assert both.model.base_model.active_adapters == ["default", "adapter1"]
    assert (both.adapters, merged.adapters) == (["first", "second"], ["first (merged)", "second (merged)"])
    assert _greedy(both) != _greedy(with_first)
    assert _greedy(both) == _greedy(merged)  # all active == merged one after the other
    inputs = both.tokenizer("one two three", return_tensors="pt")
    with torch.no_grad():
        assert torch.allclose(both.model(**inputs).logits, merged.model(**inputs).logits, atol=1e-4)


def test_engine_runs_a_peft_model_with_cache_reuse(with_first: loader.LoadedModel) -> None:
    loaded = with_first
    model = loaded.model
    # What engine.py reads from the model, through the peft wrapper.
    assert model.config.max_position_embeddings == 4096
    assert model.device.type == "cpu"
    assert model.generation_config.eos_token_id is not None

    def converse(engine: TransformersEngine) -> tuple[list[str], list[int]]:
        messages = [{"role": "user", "content": "hello"}]
        answers, reused = [], []
        for follow_up in ("and then?", "thanks"):
            chunks = list(engine.stream(GenerationRequest(list(messages), GREEDY), threading.Event()))
            final = chunks[-1]
            assert final.error is None and final.finish_reason in ("stop", "length")
            answers.append("".join(c.text for c in chunks))
            reused.append(final.stats.reused_tokens)
            messages.append({"role": "assistant", "content": answers[-1]})
            messages.append({"role": "user", "content": follow_up})
        return answers, reused

    kept = TransformersEngine(model, loaded.tokenizer, loaded.name, reuse_cache=True)
    fresh_engine = TransformersEngine(model, loaded.tokenizer, loaded.name, reuse_cache=False)
    kept.prefill_chunk = fresh_engine.prefill_chunk = 8  # these short prompts still have whole chunks to keep
    answers, reused = converse(kept)
    fresh, _ = converse(fresh_engine)
    assert reused[0] == 0 and reused[1] > 0  # the second turn reused the kept KV cache
    assert answers == fresh


def test_adapter_for_another_base_is_one_line(base_dir: Path, tmp_path: Path) -> None:
    peft = pytest.importorskip("peft", reason="LoRA adapters need peft (pip install 'qwenchat[lora]')")
    from transformers import Qwen2Config, Qwen2ForCausalLM

    other = Qwen2ForCausalLM(
        Qwen2Config(
            vocab_size=300,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
        )
    )
    config = peft.LoraConfig(r=4, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")
    peft.get_peft_model(other, config).save_pretrained(tmp_path / "small")
    with pytest.raises(LoadError) as info:
        _load(base_dir, adapters=[str(tmp_path / "small")])
    message = _one_line_error(info)
    assert message.startswith("adapter small does not fit tiny-base")
    assert "[4, 32] in the adapter, [4, 64] in the model" in message


def test_adapter_without_peft(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_loading: None) -> None:
    (tmp_path / "adapter_config.json").write_text('{"peft_type": "LORA"}')
    monkeypatch.setattr(loader, "_peft_available", lambda: False)
    with pytest.raises(LoadError) as info:
        loader.load(loader.resolve(HUB_ID), LoadOptions(adapters=[str(tmp_path)]))
    assert _one_line_error(info) == "LoRA adapters need peft: pip install 'qwenchat[lora]'"


def test_missing_adapter_dir(tmp_path: Path, no_loading: None, peft_installed: None) -> None:
    missing = tmp_path / "no-such-adapter"
    with pytest.raises(LoadError) as info:
        loader.load(loader.resolve(HUB_ID), LoadOptions(adapters=[str(missing)]))
    assert _one_line_error(info) == f"no such adapter directory: {missing}"


def test_adapter_dir_without_adapter_config(tmp_path: Path, no_loading: None, peft_installed: None) -> None:
    (tmp_path / "adapter_model.safetensors").write_bytes(b"")
    with pytest.raises(LoadError) as info:
        loader.load(loader.resolve(HUB_ID), LoadOptions(adapters=[str(tmp_path)]))
    assert _one_line_error(info) == f"{tmp_path} is not a PEFT adapter: it has no adapter_config.json"


def test_prompt_learning_adapter_is_refused(tmp_path: Path, no_loading: None, peft_installed: None) -> None:
    (tmp_path / "adapter_config.json").write_text(json.dumps({"peft_type": "PREFIX_TUNING"}))
    with pytest.raises(LoadError, match="PREFIX_TUNING adapter; only LoRA-style"):
        loader.load(loader.resolve(HUB_ID), LoadOptions(adapters=[str(tmp_path)]))


def test_adapters_of_different_kinds(tmp_path: Path, no_loading: None, peft_installed: None) -> None:
    for name, kind in (("lora", "LORA"), ("ia3", "IA3")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "adapter_config.json").write_text(json.dumps({"peft_type": kind}))
    options = LoadOptions(adapters=[str(tmp_path / "lora"), str(tmp_path / "ia3")])
    with pytest.raises(LoadError) as info:
        loader.load(loader.resolve(HUB_ID), options)
    assert _one_line_error(info) == "adapters of different kinds cannot be combined: lora (LORA), ia3 (IA3)"


def test_merge_without_adapter(no_loading: None) -> None:
    with pytest.raises(LoadError, match="^--merge-adapter needs at least one --adapter$"):
        loader.load(loader.resolve(HUB_ID), LoadOptions(merge_adapter=True))


# --- quantization and attention ------------------------------------------------------------------------


def test_4bit_on_cpu(no_loading: None) -> None:
    for options in (LoadOptions(load_in_4bit=True), LoadOptions(load_in_8bit=True, cpu_only=True)):
        with pytest.raises(LoadError) as info:
            loader.load(loader.resolve(HUB_ID), options)
        assert _one_line_error(info) == "8-bit/4-bit loading needs a CUDA GPU (bitsandbytes)"


def test_8bit_and_4bit_together(no_loading: None) -> None:
    with pytest.raises(LoadError) as info:
        loader.load(loader.resolve(HUB_ID), LoadOptions(load_in_8bit=True, load_in_4bit=True))
    assert _one_line_error(info) == "--load-in-8bit and --load-in-4bit exclude each other; pick one"


def test_quantization_without_bitsandbytes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(loader, "_bitsandbytes_available", lambda: False)
    with pytest.raises(
        LoadError, match=r"^8-bit/4-bit loading needs bitsandbytes: pip install 'qwenchat\[quant\]'$"
    ):
        loader.check_options(LoadOptions(load_in_4bit=True), cuda_count=1)
    monkeypatch.setattr(loader, "_bitsandbytes_available", lambda: True)
    loader.check_options(LoadOptions(load_in_8bit=True), cuda_count=1)


def test_unknown_attention_implementation(no_loading: None) -> None:
    with pytest.raises(LoadError) as info:
        loader.load(loader.resolve(HUB_ID), LoadOptions(attn_implementation="foo"))
    assert _one_line_error(info) == (
        "--attn-implementation must be one of sdpa, eager, flash_attention_2; got 'foo'"
    )


def test_flash_attention_needs_cuda_and_flash_attn(monkeypatch: pytest.MonkeyPatch, no_loading: None) -> None:
    with pytest.raises(LoadError, match="^flash_attention_2 needs a CUDA GPU"):
        loader.load(
            loader.resolve(HUB_ID), LoadOptions(attn_implementation="flash_attention_2", cpu_only=True)
        )
    monkeypatch.setattr(loader, "_flash_attn_available", lambda: False)
    with pytest.raises(LoadError) as info:
        loader.check_options(LoadOptions(attn_implementation="flash_attention_2"), cuda_count=1)
    assert "pip install flash-attn" in _one_line_error(info)


def test_attention_implementation_is_passed(base_dir: Path) -> None:
    loaded = _load(base_dir, attn_implementation="eager")  # sdpa is the default on this torch
    assert loaded.model.config._attn_implementation == "eager"


# --- remote code ---------------------------------------------------------------------------------------

CONFIGURATION_X = """from transformers import Qwen2Config


class XConfig(Qwen2Config):
    model_type = "qwenchat-x"
"""
MODELING_X = """from transformers import Qwen2ForCausalLM

from .configuration_x import XConfig


class XForCausalLM(Qwen2ForCausalLM):
    config_class = XConfig
"""


@pytest.fixture
def custom_code_dir(base_dir: Path, tmp_path: Path) -> Path:
    """A model whose config names a model_type transformers does not know, with the code beside it."""
    path = tmp_path / "custom-x"
    path.mkdir()
    for item in base_dir.iterdir():
        (path / item.name).write_bytes(item.read_bytes())
    (path / "configuration_x.py").write_text(CONFIGURATION_X)
    (path / "modeling_x.py").write_text(MODELING_X)
    config = json.loads((path / "config.json").read_text())
    config.update(
        model_type="qwenchat-x",
        architectures=["XForCausalLM"],
        auto_map={"AutoConfig": "configuration_x.XConfig", "AutoModelForCausalLM": "modeling_x.XForCausalLM"},
    )
    (path / "config.json").write_text(json.dumps(config))
    return path


def test_remote_code_needs_the_flag(custom_code_dir: Path) -> None:
    with pytest.raises(LoadError) as info:
        _load(custom_code_dir)
    assert _one_line_error(info) == (
        "custom-x needs custom code from its repository; rerun with --trust-remote-code if you trust it"
    )
    loaded = _load(custom_code_dir, trust_remote_code=True)
    assert type(loaded.model).__name__ == "XForCausalLM"
    assert len(_greedy(loaded, 3)) == 3


# --- hubs: offline, unreachable ------------------------------------------------------------------------


class Hooks:
    """Stand-ins for both snapshot hooks that record their calls."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, ms: object, hf: object) -> None:
        self.calls: list[tuple[str, str, bool]] = []
        self.answers = {"ms": ms, "hf": hf}
        monkeypatch.setattr(hub, "_modelscope_snapshot", self._ms)
        monkeypatch.setattr(hub, "_hf_snapshot", self._hf)

    def _answer(self, hub: str, repo_id: str, offline: bool) -> str:
        self.calls.append((hub, repo_id, offline))
        answer = self.answers[hub]
        if isinstance(answer, dict):  # per repository
            answer = answer[repo_id]
        if isinstance(answer, BaseException):
            raise answer
        return str(answer)

    def _ms(self, repo_id: str, revision: str | None, cache_dir: str | None, offline: bool = False) -> str:
        return self._answer("ms", repo_id, offline)

    def _hf(self, repo_id: str, revision: str | None, cache_dir: str | None, offline: bool) -> str:
        return self._answer("hf", repo_id, offline)


def _cache_miss() -> BaseException:
    from huggingface_hub.errors import LocalEntryNotFoundError

    return LocalEntryNotFoundError("Cannot find an appropriate cached snapshot folder\nand more")


def test_offline_cache_miss_names_the_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    hooks = Hooks(monkeypatch, ms=AssertionError("not asked"), hf=_cache_miss())
    monkeypatch.setattr(hub, "_reachable", lambda *a, **k: pytest.fail("offline must not probe the network"))
    options = LoadOptions(source="hf", offline=True, cache_dir=str(tmp_path))
    with pytest.raises(LoadError) as info:
        loader.load(loader.resolve(HUB_ID), options)
    assert _one_line_error(info) == (
        f"{HUB_ID} is not in the local cache (offline); looked in the Hugging Face cache {tmp_path}"
    )
    assert hooks.calls == [("hf", HUB_ID, True)]


def test_unreachable_hubs_fail_fast_without_calling_the_clients(
    monkeypatch: pytest.MonkeyPatch, peft_installed: None
) -> None:
    hooks = Hooks(monkeypatch, ms=AssertionError("not asked"), hf=AssertionError("not asked"))
    probed: list[str] = []
    monkeypatch.setattr(hub, "_reachable", lambda host, *a, **k: probed.append(host) or False)
    start = time.monotonic()
    with pytest.raises(LoadError) as info:
        loader.load(loader.resolve(HUB_ID), LoadOptions())
    assert time.monotonic() - start < 1.0
    assert _one_line_error(info) == (
        f"cannot reach ModelScope or the Hugging Face hub (offline?) to download {HUB_ID}; "
        "use a local path, or --offline with a cached model"
    )
    # only the local caches were asked, never the hubs themselves
    assert hooks.calls == [("ms", HUB_ID, True), ("hf", HUB_ID, True)]
    assert probed == ["modelscope.cn", "www.modelscope.ai", "huggingface.co"]

    with pytest.raises(LoadError, match="^cannot reach the Hugging Face hub .* download adapter me/my-lora;"):
        loader.load(loader.resolve(HUB_ID), LoadOptions(source="hf", adapters=["me/my-lora"]))
    assert all(offline for _, _, offline in hooks.calls)


def test_unreachable_hubs_fall_back_to_a_cached_copy(monkeypatch: pytest.MonkeyPatch, base_dir: Path) -> None:
    """No network, but the model is in the Hugging Face cache: it loads as --offline would, no flag needed."""
    hooks = Hooks(monkeypatch, ms=_cache_miss(), hf=base_dir)
    monkeypatch.setattr(hub, "_reachable", lambda *a, **k: False)
    assert loader.download(loader.resolve(HUB_ID), LoadOptions()) == base_dir
    assert all(offline for _, _, offline in hooks.calls)


def test_one_hub_unreachable_uses_the_other(monkeypatch: pytest.MonkeyPatch, base_dir: Path) -> None:
    hooks = Hooks(monkeypatch, ms=AssertionError("not asked"), hf=base_dir)
    monkeypatch.setattr(hub, "_reachable", lambda host, *a, **k: host == "huggingface.co")
    assert loader.download(loader.resolve(HUB_ID), LoadOptions()) == base_dir
    assert hooks.calls == [("hf", HUB_ID, False)]

    hooks = Hooks(monkeypatch, ms=AssertionError("not asked"), hf=_cache_miss())
    with pytest.raises(LoadError) as info:
        loader.download(loader.resolve(HUB_ID), LoadOptions())
    assert _one_line_error(info) == (
        f"could not download {HUB_ID}: ModelScope: cannot be reached (modelscope.cn, www.modelscope.ai); "
        "Hugging Face: not cached and the hub could not be reached"
    )


def test_offline_load_makes_no_network_calls(
    monkeypatch: pytest.MonkeyPatch, base_dir: Path, request: pytest.FixtureRequest
) -> None:
    """Model and adapter from the (fake) HF cache: transformers and peft must not reach out either."""
    with_peft = importlib.util.find_spec("peft") is not None
    cached = {HUB_ID: base_dir}
    if with_peft:
        cached["me/my-lora"] = request.getfixturevalue("adapters")[0]
    hooks = Hooks(monkeypatch, ms=_cache_miss(), hf=cached)

    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"network used: {args[1:]}")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    adapters = ["me/my-lora"] if with_peft else []
    loaded = loader.load(loader.resolve(HUB_ID), LoadOptions(offline=True, adapters=adapters, **F32))
    assert (loaded.name, loaded.adapters) == (HUB_ID, adapters)
    # The adapter is fetched first, through the same hooks as models.
    expected = [(hub, repo, True) for repo in [*adapters, HUB_ID] for hub in ("ms", "hf")]
    assert hooks.calls == expected


# --- the command line ----------------------------------------------------------------------------------


def test_cli_load_errors_are_one_line_without_traceback(tmp_path: Path) -> None:
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    commands = {"no config": ["-c", str(tmp_path)], "4-bit": ["--demo", "--load-in-4bit"]}
    # Both at once: each spends its seconds importing torch and transformers.
    running = {
        key: subprocess.Popen(
            [sys.executable, "-m", "qwenchat", "--no-autosave", *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for key, args in commands.items()
    }
    results = {key: (proc.communicate(timeout=120)[1], proc.returncode) for key, proc in running.items()}

    stderr, code = results["no config"]
    assert code == 2
    assert stderr.startswith(f"error: {tmp_path} is not a model directory: it has no config.json")
    assert "Traceback" not in stderr
    stderr, code = results["4-bit"]
    assert code == 2
    # The CLI shows "loading demo …" before the load starts; the error is the last line.
    assert stderr.strip().splitlines()[-1] == "error: 8-bit/4-bit loading needs a CUDA GPU (bitsandbytes)"
    assert "Traceback" not in stderr
