"""Tests for model resolution and loading (qwenchat.models.loader).

No network: hub downloads are tested by replacing `hub._modelscope_snapshot` and `hub._hf_snapshot`
with functions that return a local directory (the demo model's converted HF directory). Real loads use
the demo model from the shared cache ($QWENCHAT_CACHE_DIR if set, else the user cache), once per module.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from qwenchat.models import LoadError, demo, hub, loader
from qwenchat.models.loader import LoadOptions, ModelSource


@pytest.fixture(autouse=True)
def _hubs_reachable(monkeypatch: pytest.MonkeyPatch) -> None:
    """The fake snapshot hooks stand in for the hubs, so the real connectivity pre-check must not run."""
    monkeypatch.setattr(hub, "_reachable", lambda *args, **kwargs: True)


@pytest.fixture(scope="module")
def hf_dir() -> Path:
    return demo.ensure_demo()


@pytest.fixture(scope="module")
def demo_loaded(hf_dir: Path) -> loader.LoadedModel:
    return loader.load(loader.resolve(None, demo=True), LoadOptions())


# --- resolve -----------------------------------------------------------------------------------------


def test_resolve_demo() -> None:
    assert loader.resolve(None, demo=True).kind == "demo"
    assert loader.resolve("Qwen/Qwen2.5-0.5B-Instruct", demo=True).kind == "demo"
    source = loader.resolve("demo")
    assert (source.kind, source.spec, source.path, source.repo_id) == ("demo", "demo", None, None)


def test_resolve_model_dir(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    source = loader.resolve(str(tmp_path))
    assert source == ModelSource(kind="dir", spec=str(tmp_path), path=tmp_path.resolve(), repo_id=None)


def test_resolve_dir_without_config(tmp_path: Path) -> None:
    with pytest.raises(LoadError, match="no config.json"):
        loader.resolve(str(tmp_path))
    (tmp_path / "model-q4.gguf").write_bytes(b"GGUF")
    with pytest.raises(LoadError, match="model-q4.gguf"):
        loader.resolve(str(tmp_path))


def test_resolve_gguf_file(tmp_path: Path) -> None:
    for name in ("model.gguf", "MODEL.GGUF"):
        path = tmp_path / name
        path.write_bytes(b"GGUF")
        source = loader.resolve(str(path))
        assert (source.kind, source.path, source.repo_id) == ("gguf", path.resolve(), None)


def test_resolve_other_file(tmp_path: Path) -> None:
    path = tmp_path / "model.bin"
    path.write_bytes(b"x")
    with pytest.raises(LoadError, match="not a model"):
        loader.resolve(str(path))


@pytest.mark.parametrize(
    "spec", ["./no-such-model", "../no-such-model", "/no/such/model", "~/no-such-qwenchat-model", "x.gguf"]
)
def test_resolve_missing_path(spec: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(LoadError, match="^no such file or directory: "):
        loader.resolve(spec)


def test_resolve_hub_id(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    source = loader.resolve("Qwen/Qwen2.5-0.5B-Instruct")
    assert source == ModelSource(
        kind="hub", spec="Qwen/Qwen2.5-0.5B-Instruct", path=None, repo_id="Qwen/Qwen2.5-0.5B-Instruct"
    )
    # A local directory of the same name wins, as with from_pretrained.
    local = tmp_path / "Qwen" / "Qwen2.5-0.5B-Instruct"
    local.mkdir(parents=True)
    (local / "config.json").write_text("{}")
    assert loader.resolve("Qwen/Qwen2.5-0.5B-Instruct").kind == "dir"


@pytest.mark.parametrize("spec", ["", "   ", None, "justaname", "a/b/c", "own er/name", "owner/na--me"])
def test_resolve_rejects_nonsense(spec: str | None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(LoadError) as info:
        loader.resolve(spec)
    assert "\n" not in str(info.value)


# --- device and dtype ----------------------------------------------------------------------------------


def test_device_map_cpu() -> None:
    assert loader.choose_device_map(LoadOptions(), 0) == ("cpu", "cpu")
    assert loader.choose_device_map(LoadOptions(cpu_only=True, gpus="1"), 2) == ("cpu", "cpu")


def test_device_map_gpus() -> None:
    assert loader.choose_device_map(LoadOptions(), 1) == ("auto", "cuda:0")
    assert loader.choose_device_map(LoadOptions(), 2) == ("auto", "cuda (2 GPUs)")
    assert loader.choose_device_map(LoadOptions(gpus="1"), 2) == ({"": 1}, "cuda:1")
    assert loader.choose_device_map(LoadOptions(gpus=" 0 "), 1) == ({"": 0}, "cuda:0")
    assert loader.choose_device_map(LoadOptions(gpus="2,"), 4) == ({"": 2}, "cuda:2")
    assert loader.choose_device_map(LoadOptions(gpus="0,2"), 4) == ("auto", "cuda (2 GPUs: 0,2)")


@pytest.mark.parametrize("gpus", ["2", "0,5", "x", "-1", "0;1", ","])
def test_device_map_bad_gpus(gpus: str) -> None:
    with pytest.raises(LoadError, match="GPU|--gpus"):
        loader.choose_device_map(LoadOptions(gpus=gpus), 2)


def test_max_memory_only_for_a_gpu_list() -> None:
    free = {0: 1000, 1: 2000, 2: 3000}.__getitem__
    assert loader.choose_max_memory(LoadOptions(gpus="1,2"), 3, free) == {1: 1800, 2: 2700}
    assert loader.choose_max_memory(LoadOptions(), 3, free) is None
    assert loader.choose_max_memory(LoadOptions(gpus="1"), 3, free) is None
    assert loader.choose_max_memory(LoadOptions(gpus="0,1", cpu_only=True), 3, free) is None


def test_choose_dtype() -> None:
    assert loader.choose_dtype(LoadOptions(), on_gpu=False) is torch.bfloat16
    assert loader.choose_dtype(LoadOptions(), on_gpu=True) == "auto"
    assert loader.choose_dtype(LoadOptions(dtype="float16"), on_gpu=True) is torch.float16
    assert loader.choose_dtype(LoadOptions(dtype="fp32"), on_gpu=False) is torch.float32
    assert loader.choose_dtype(LoadOptions(dtype="BF16"), on_gpu=True) is torch.bfloat16
    with pytest.raises(LoadError, match="--dtype"):
        loader.choose_dtype(LoadOptions(dtype="int8"), on_gpu=False)


# --- download ------------------------------------------------------------------------------------------

HUB = ModelSource(
    kind="hub", spec="Qwen/Qwen2.5-0.5B-Instruct", path=None, repo_id="Qwen/Qwen2.5-0.5B-Instruct"
)


class RepositoryNotFoundError(Exception):
    """Same name as huggingface_hub's, which is how the loader recognises it."""


class FakeHubs:
    """Stand-ins for both hub clients that record calls and either fail or return a directory."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, ms: object, hf: object) -> None:
        self.calls: list[tuple] = []
        self.ms, self.hf = ms, hf
        monkeypatch.setattr(hub, "_modelscope_snapshot", self._ms)
        monkeypatch.setattr(hub, "_hf_snapshot", self._hf)

    @staticmethod
    def _answer(result: object) -> str:
        if isinstance(result, BaseException):
            raise result
        return str(result)

    def _ms(self, repo_id: str, revision: str | None, cache_dir: str | None, offline: bool = False) -> str:
        self.calls.append(("ms", repo_id, revision, cache_dir, offline))
        return self._answer(self.ms)

    def _hf(self, repo_id: str, revision: str | None, cache_dir: str | None, offline: bool) -> str:
        self.calls.append(("hf", repo_id, revision, cache_dir, offline))
        return self._answer(self.hf)


def test_download_local_sources(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    assert loader.download(loader.resolve(str(tmp_path)), LoadOptions()) == tmp_path.resolve()
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF")
    assert loader.download(loader.resolve(str(gguf)), LoadOptions()) == gguf.resolve()
    gone = ModelSource(kind="dir", spec="./gone", path=tmp_path / "gone", repo_id=None)
    with pytest.raises(LoadError, match="no such file or directory: ./gone"):
        loader.download(gone, LoadOptions())


def test_download_auto_prefers_modelscope(monkeypatch: pytest.MonkeyPatch, hf_dir: Path) -> None:
    hubs = FakeHubs(monkeypatch, ms=hf_dir, hf=AssertionError("should not be asked"))
    options = LoadOptions(revision="v1", cache_dir="/cache")
    assert loader.download(HUB, options) == hf_dir
    assert hubs.calls == [("ms", HUB.repo_id, "v1", "/cache", False)]


def test_download_auto_falls_back_to_hf(monkeypatch: pytest.MonkeyPatch, hf_dir: Path) -> None:
    hubs = FakeHubs(monkeypatch, ms=ConnectionError("no route"), hf=hf_dir)
    messages: list[str] = []
    assert loader.download(HUB, LoadOptions(), messages.append) == hf_dir
    assert [c[0] for c in hubs.calls] == ["ms", "hf"]
    assert messages


def test_download_both_fail_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    FakeHubs(monkeypatch, ms=ConnectionError("no route\nmore"), hf=RepositoryNotFoundError("404\nRepository"))
    with pytest.raises(LoadError) as info:
        loader.download(HUB, LoadOptions())
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("could not download Qwen/Qwen2.5-0.5B-Instruct: ")
    assert "ModelScope: the hub could not be reached" in message
    assert "Hugging Face: repository not found" in message


def test_download_single_source(monkeypatch: pytest.MonkeyPatch, hf_dir: Path) -> None:
    hubs = FakeHubs(monkeypatch, ms=AssertionError("not asked"), hf=hf_dir)
    assert loader.download(HUB, LoadOptions(source="hf")) == hf_dir
    assert [c[0] for c in hubs.calls] == ["hf"]

    hubs = FakeHubs(monkeypatch, ms=ValueError("boom"), hf=AssertionError("not asked"))
    with pytest.raises(LoadError) as info:
        loader.download(HUB, LoadOptions(source="modelscope"))
    assert str(info.value) == "could not download Qwen/Qwen2.5-0.5B-Instruct: ModelScope: boom"
    assert [c[0] for c in hubs.calls] == ["ms"]

    with pytest.raises(LoadError, match="--source"):
        loader.download(HUB, LoadOptions(source="github"))


def test_download_offline(monkeypatch: pytest.MonkeyPatch, hf_dir: Path) -> None:
    class LocalEntryNotFoundError(Exception):
        pass

    hubs = FakeHubs(monkeypatch, ms=LocalEntryNotFoundError("miss"), hf=hf_dir)
    assert loader.download(HUB, LoadOptions(offline=True)) == hf_dir
    assert [(c[0], c[-1]) for c in hubs.calls] == [("ms", True), ("hf", True)]

    FakeHubs(monkeypatch, ms=LocalEntryNotFoundError("miss"), hf=LocalEntryNotFoundError("miss"))
    with pytest.raises(LoadError) as info:
        loader.download(HUB, LoadOptions(offline=True, cache_dir="/my/cache"))
    assert str(info.value) == (
        "Qwen/Qwen2.5-0.5B-Instruct is not in the local cache (offline); "
        "looked in the ModelScope cache /my/cache and the Hugging Face cache /my/cache"
    )


def test_download_snapshot_without_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    FakeHubs(monkeypatch, ms=tmp_path, hf=ImportError("No module named huggingface_hub"))
    with pytest.raises(LoadError) as info:
        loader.download(HUB, LoadOptions())
    assert "has no config.json" in str(info.value)
    assert "Hugging Face: not installed (pip install huggingface_hub)" in str(info.value)


# --- load ----------------------------------------------------------------------------------------------


def test_load_demo_on_cpu_defaults_to_bfloat16(demo_loaded: loader.LoadedModel) -> None:
    assert demo_loaded.name == demo.DEMO_NAME
    assert demo_loaded.source.kind == "demo"
    assert (demo_loaded.device, demo_loaded.dtype) == ("cpu", "bfloat16")
    assert demo_loaded.model.dtype is torch.bfloat16
    assert not demo_loaded.model.training
    assert demo_loaded.tokenizer.chat_template
    inputs = demo_loaded.tokenizer.apply_chat_template(
        [{"role": "user", "content": "Say hi."}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )
    with torch.no_grad():
        out = demo_loaded.model.generate(**inputs, max_new_tokens=3, do_sample=False)
    assert out.shape[1] == inputs["input_ids"].shape[1] + 3


def test_load_hub_id_through_fake_snapshot(monkeypatch: pytest.MonkeyPatch, hf_dir: Path) -> None:
    FakeHubs(monkeypatch, ms=OSError("down"), hf=hf_dir)
    messages: list[str] = []
    loaded = loader.load(HUB, LoadOptions(cpu_only=True), messages.append)
    assert (loaded.name, loaded.device, loaded.dtype) == ("Qwen/Qwen2.5-0.5B-Instruct", "cpu", "bfloat16")
    assert any("loading" in m for m in messages)


def test_load_without_chat_template_is_not_refused(tmp_path: Path, hf_dir: Path) -> None:
    """A base model has no chat template: it loads (the engine runs it as plain completion); here only
    its missing weights stop the load."""
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json"):
        shutil.copy(hf_dir / name, tmp_path / name)
    assert "chat_template" not in json.loads((tmp_path / "tokenizer_config.json").read_text())
    messages: list[str] = []
    with pytest.raises(LoadError) as info:
        loader.load(loader.resolve(str(tmp_path)), LoadOptions(), messages.append)
    assert "chat template" not in str(info.value)
    assert any(m.startswith("loading ") and " on cpu " in m for m in messages)  # past the tokenizer


def test_load_custom_code_needs_flag(tmp_path: Path) -> None:
    config = {
        "model_type": "qwenchat-custom",
        "architectures": ["CustomForCausalLM"],
        "auto_map": {
            "AutoConfig": "configuration_custom.CustomConfig",
            "AutoModelForCausalLM": "modeling_custom.CustomForCausalLM",
        },
    }
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(LoadError, match="--trust-remote-code") as info:
        loader.load(loader.resolve(str(tmp_path)), LoadOptions())
    assert "\n" not in str(info.value)


def test_load_broken_dir_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(LoadError, match=f"^could not load {tmp_path.name}: ") as info:
        loader.load(loader.resolve(str(tmp_path)), LoadOptions())
    assert "\n" not in str(info.value)


def test_load_gguf_without_gguf_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "m.gguf"
    path.write_bytes(b"GGUF")
    monkeypatch.setattr(loader, "_gguf_available", lambda: False)
    with pytest.raises(LoadError, match="pip install gguf"):
        loader.load(loader.resolve(str(path)), LoadOptions())


def test_load_missing_path() -> None:
    with pytest.raises(LoadError, match="no such file or directory"):
        loader.load(loader.resolve("./definitely/not/here"), LoadOptions())
