"""Turn what the user typed into a loaded model: resolve the spec, download if needed, pick device/dtype.

torch, transformers and the hub clients are imported lazily so that `--help` and the pure helpers stay
fast. Nothing here prints: callers pass a `progress` callback. Every user-facing failure is a LoadError
with one line of text.
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from qwenchat import demo

if TYPE_CHECKING:
    import torch

Progress = Callable[[str], None] | None

SOURCES = ("auto", "modelscope", "hf")
# Accepted spellings for --dtype, mapped to torch attribute names.
DTYPES = {
    "auto": "auto",
    "bfloat16": "bfloat16",
    "bf16": "bfloat16",
    "float16": "float16",
    "fp16": "float16",
    "half": "float16",
    "float32": "float32",
    "fp32": "float32",
    "float": "float32",
}
# Hub ids: owner/name with the characters both hubs allow.
_REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9_.-]+$")
# Files that from_pretrained never reads; skipping them saves gigabytes on some repos.
_SNAPSHOT_IGNORE = ["*.gguf", "*.onnx", "*.onnx_data", "*.h5", "*.msgpack", "*.ot", "*.tflite", "original/*"]
_CHAT_TEMPLATE_HINT = (
    "this tokenizer has no chat template; use an instruct/chat model (base models have none) "
    "or add a chat_template to its tokenizer_config.json"
)


class LoadError(Exception):
    """A model that cannot be found or loaded; the message is one line for the user."""


@dataclass(frozen=True)
class ModelSource:
    kind: str  # "dir" | "gguf" | "hub" | "demo"
    spec: str  # what the user typed (or "demo")
    path: Path | None  # local dir, .gguf file
    repo_id: str | None  # for hub


@dataclass
class LoadOptions:
    source: str = "auto"  # auto|modelscope|hf (for hub ids)
    cpu_only: bool = False
    gpus: str = "auto"  # auto | N | "0,1"
    dtype: str = "auto"  # auto|bfloat16|float16|float32
    trust_remote_code: bool = False
    revision: str | None = None
    cache_dir: str | None = None
    offline: bool = False


@dataclass
class LoadedModel:
    model: Any
    tokenizer: Any
    name: str
    device: str  # "cpu", "cuda:0", "cuda (2 GPUs)"
    dtype: str  # "bfloat16", ...
    source: ModelSource


def _say(progress: Progress, message: str) -> None:
    if progress is not None:
        progress(message)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0].strip() if text else type(exc).__name__


def _looks_like_path(spec: str) -> bool:
    return spec.startswith(("./", "../", "/", "~", ".\\", "..\\")) or spec.lower().endswith(".gguf")


def resolve(spec: str | None, *, demo: bool = False) -> ModelSource:
    """Classify a model spec by looking at the local filesystem only (no network, no imports)."""
    if demo or spec == "demo":
        return ModelSource(kind="demo", spec="demo", path=None, repo_id=None)
    if spec is None or not spec.strip():
        raise LoadError(
            "no model given; pass a model directory, a .gguf file, a hub id (owner/name) or --demo"
        )
    spec = spec.strip()
    path = Path(spec).expanduser()
    if path.is_dir():
        if (path / "config.json").is_file():
            return ModelSource(kind="dir", spec=spec, path=path.resolve(), repo_id=None)
        ggufs = sorted(p.name for p in path.glob("*.gguf"))
        hint = f"; to load a GGUF pass the file, e.g. {path / ggufs[0]}" if ggufs else ""
        raise LoadError(f"{spec} is not a model directory: it has no config.json{hint}")
    if path.is_file():
        if path.suffix.lower() == ".gguf":
            return ModelSource(kind="gguf", spec=spec, path=path.resolve(), repo_id=None)
        raise LoadError(f"{spec} is not a model: expected a directory with config.json or a .gguf file")
    if _looks_like_path(spec):
        raise LoadError(f"no such file or directory: {spec}")
    if _REPO_ID.match(spec) and ".." not in spec and "--" not in spec:
        return ModelSource(kind="hub", spec=spec, path=None, repo_id=spec)
    raise LoadError(f"not a model directory, .gguf file or hub id (owner/name): {spec}")


# --- downloading -----------------------------------------------------------------------------------


def _modelscope_snapshot(
    repo_id: str, revision: str | None, cache_dir: str | None, offline: bool = False
) -> str:
    """Download (or, offline, find in the local cache) a ModelScope snapshot; returns its directory.

    `offline` is passed only when true, so a three-argument stand-in works for online calls.
    """
    from modelscope import snapshot_download

    return snapshot_download(
        repo_id,
        revision=revision,
        cache_dir=cache_dir,
        local_files_only=offline,
        ignore_patterns=_SNAPSHOT_IGNORE,
    )


def _hf_snapshot(repo_id: str, revision: str | None, cache_dir: str | None, offline: bool) -> str:
    """Download (or, offline, find in the local cache) a Hugging Face hub snapshot; returns its directory."""
    from huggingface_hub import snapshot_download

    return snapshot_download(
        repo_id,
        revision=revision,
        cache_dir=cache_dir,
        local_files_only=offline,
        ignore_patterns=_SNAPSHOT_IGNORE,
    )


def _modelscope_cache(cache_dir: str | None) -> str:
    if cache_dir:
        return cache_dir
    try:
        from modelscope.utils.file_utils import get_modelscope_cache_dir

        return str(get_modelscope_cache_dir())
    except Exception:  # only for the error message; never let it hide the real failure
        return "the ModelScope cache"


def _hf_cache(cache_dir: str | None) -> str:
    if cache_dir:
        return cache_dir
    try:
        from huggingface_hub import constants

        return str(constants.HF_HUB_CACHE)
    except Exception:  # only for the error message
        return "the Hugging Face cache"


def _describe_hub_error(exc: BaseException, hub: str, offline: bool) -> str:
    """One short phrase for a hub failure; the clients' own messages are multi-line and noisy."""
    names = {cls.__name__ for cls in type(exc).__mro__}
    if isinstance(exc, ImportError):
        package = "modelscope" if hub == "ModelScope" else "huggingface_hub"
        return f"not installed (pip install {package})"
    if "GatedRepoError" in names:
        return "gated repository: accept its terms on the website and log in (hf auth login)"
    if "RevisionNotFoundError" in names:
        return "revision not found"
    if "RepositoryNotFoundError" in names:
        return "repository not found (or private: log in first)"
    if names & {"LocalEntryNotFoundError", "OfflineModeIsEnabled", "CacheNotFound", "CacheError"}:
        return "not in the local cache" if offline else "not cached and the hub could not be reached"
    if isinstance(exc, ConnectionError) or "NetworkError" in names:
        return "the hub could not be reached (network error)"
    return _first_line(exc)


def download(source: ModelSource, options: LoadOptions, progress: Progress = None) -> Path:
    """Return a local path for `source`: the dir/.gguf itself, the demo cache, or a hub snapshot."""
    if source.kind in ("dir", "gguf"):
        assert source.path is not None
        if not source.path.exists():
            raise LoadError(f"no such file or directory: {source.spec}")
        return source.path
    if source.kind == "demo":
        try:
            return demo.ensure_demo(progress)
        except demo.DemoError as exc:
            raise LoadError(str(exc)) from None
    if source.kind != "hub" or not source.repo_id:
        raise LoadError(f"unknown model source: {source.spec}")
    if options.source not in SOURCES:
        raise LoadError(f"--source must be one of {', '.join(SOURCES)}; got {options.source!r}")

    repo_id = source.repo_id
    hubs = {"auto": ("ModelScope", "Hugging Face"), "modelscope": ("ModelScope",), "hf": ("Hugging Face",)}
    failures: list[tuple[str, str]] = []
    for hub in hubs[options.source]:
        _say(progress, f"looking for {repo_id} in the {hub} {'cache' if options.offline else 'hub'}")
        try:
            if hub == "ModelScope":
                if options.offline:
                    local = _modelscope_snapshot(repo_id, options.revision, options.cache_dir, offline=True)
                else:
                    local = _modelscope_snapshot(repo_id, options.revision, options.cache_dir)
            else:
                local = _hf_snapshot(repo_id, options.revision, options.cache_dir, options.offline)
        except Exception as exc:  # any client failure is one attempt that did not work
            failures.append((hub, _describe_hub_error(exc, hub, options.offline)))
            continue
        path = Path(local)
        if (path / "config.json").is_file():
            return path
        failures.append((hub, f"its snapshot {path} has no config.json (not a transformers model)"))

    if options.offline:
        looked = []
        for hub, reason in failures:
            cache = (
                _modelscope_cache(options.cache_dir) if hub == "ModelScope" else _hf_cache(options.cache_dir)
            )
            extra = "" if reason == "not in the local cache" else f" ({reason})"
            looked.append(f"the {hub} cache {cache}{extra}")
        raise LoadError(f"{repo_id} is not in the local cache (offline); looked in " + " and ".join(looked))
    tried = "; ".join(f"{hub}: {reason}" for hub, reason in failures)
    raise LoadError(f"could not download {repo_id}: {tried}")


# --- device and dtype ----------------------------------------------------------------------------------


def parse_gpus(gpus: str, cuda_count: int) -> list[int] | None:
    """`auto` -> None (all GPUs); `1` -> [1]; `0,2` -> [0, 2]. Checks that the GPUs exist."""
    text = gpus.strip().lower()
    if text in ("", "auto", "all"):
        return None
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if not parts or not all(p.isdigit() for p in parts):
        raise LoadError(f"--gpus must be auto, a GPU index or a list like 0,1; got {gpus!r}")
    indices = list(dict.fromkeys(int(p) for p in parts))
    missing = [i for i in indices if i >= cuda_count]
    if missing:
        raise LoadError(f"no GPU {missing[0]}: this machine has {cuda_count} CUDA device(s)")
    return indices


def choose_device_map(options: LoadOptions, cuda_count: int) -> tuple[str | dict[str, int], str]:
    """Pure: the device_map for from_pretrained and a human description of where the model goes."""
    if options.cpu_only or cuda_count <= 0:
        return "cpu", "cpu"
    indices = parse_gpus(options.gpus, cuda_count)
    if indices is None:
        return "auto", ("cuda:0" if cuda_count == 1 else f"cuda ({cuda_count} GPUs)")
    if len(indices) == 1:
        return {"": indices[0]}, f"cuda:{indices[0]}"
    # Several chosen GPUs: let accelerate split the layers, limited to them by choose_max_memory.
    return "auto", f"cuda ({len(indices)} GPUs: {','.join(map(str, indices))})"


def choose_max_memory(
    options: LoadOptions, cuda_count: int, free_memory: Callable[[int], int]
) -> dict[int, int] | None:
    """Pure apart from `free_memory(gpu)`: restrict an "auto" split to the GPUs listed in --gpus."""
    if options.cpu_only or cuda_count <= 0:
        return None
    indices = parse_gpus(options.gpus, cuda_count)
    if indices is None or len(indices) < 2:
        return None
    # accelerate only places weights on devices named here; keep a little headroom for activations.
    return {i: int(free_memory(i) * 0.9) for i in indices}


def choose_dtype(options: LoadOptions, on_gpu: bool) -> str | torch.dtype:
    """`auto`: the checkpoint's own dtype on GPU, bfloat16 on CPU (about 1.9x faster decode than fp32)."""
    key = DTYPES.get(options.dtype.strip().lower())
    if key is None:
        raise LoadError(f"--dtype must be one of auto, bfloat16, float16, float32; got {options.dtype!r}")
    if key == "auto" and on_gpu:
        return "auto"
    import torch

    return torch.bfloat16 if key == "auto" else getattr(torch, key)


# --- loading -------------------------------------------------------------------------------------------


def _gguf_available() -> bool:
    return importlib.util.find_spec("gguf") is not None


def _display_name(source: ModelSource) -> str:
    if source.kind == "demo":
        return demo.DEMO_NAME
    if source.kind == "hub" and source.repo_id:
        return source.repo_id
    if source.path is not None:
        return source.path.name
    return source.spec


def _wrap(exc: BaseException, name: str, trusted: bool) -> LoadError:
    message = str(exc)
    if not trusted and ("trust_remote_code" in message or "trust-remote-code" in message):
        return LoadError(
            f"{name} needs custom code from its repository; rerun with --trust-remote-code if you trust it"
        )
    return LoadError(f"could not load {name}: {_first_line(exc)}")


def load(source: ModelSource, options: LoadOptions, progress: Progress = None) -> LoadedModel:
    """Download if needed, then load tokenizer and model on the chosen device and dtype, in eval mode."""
    name = _display_name(source)
    import torch

    # Check --gpus/--dtype before a download that could take minutes.
    cuda_count = 0 if options.cpu_only else torch.cuda.device_count()
    device_map, device = choose_device_map(options, cuda_count)
    dtype = choose_dtype(options, on_gpu=device_map != "cpu")
    path = download(source, options, progress)

    # Always explicit: left unset, transformers asks "run the custom code? [y/N]" on stdin mid-load.
    kwargs: dict[str, Any] = {"trust_remote_code": options.trust_remote_code}
    if source.kind == "gguf":
        if not _gguf_available():
            raise LoadError("reading .gguf files needs the gguf package: pip install gguf")
        model_dir, kwargs["gguf_file"] = path.parent, path.name
    else:
        model_dir = path

    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    _say(progress, f"loading tokenizer for {name}")
    try:
        if source.kind != "gguf":
            # The config is cheap and names custom code plainly; the tokenizer may fail vaguer first.
            AutoConfig.from_pretrained(model_dir, **kwargs)
        tokenizer = AutoTokenizer.from_pretrained(model_dir, **kwargs)
    except (OSError, ValueError, KeyError, ImportError, RuntimeError, TypeError) as exc:
        raise _wrap(exc, name, options.trust_remote_code) from None
    if not getattr(tokenizer, "chat_template", None):
        raise LoadError(_CHAT_TEMPLATE_HINT)

    model_kwargs = dict(kwargs, dtype=dtype, device_map=device_map)
    max_memory = choose_max_memory(options, cuda_count, lambda i: torch.cuda.mem_get_info(i)[0])
    if max_memory:
        model_kwargs["max_memory"] = max_memory
    dtype_name = dtype if isinstance(dtype, str) else str(dtype).removeprefix("torch.")
    _say(progress, f"loading {name} on {device} ({dtype_name})")
    try:
        model = AutoModelForCausalLM.from_pretrained(model_dir, **model_kwargs)
    except (OSError, ValueError, KeyError, ImportError, RuntimeError, TypeError) as exc:
        raise _wrap(exc, name, options.trust_remote_code) from None
    model.eval()
    actual_dtype = str(getattr(model, "dtype", dtype_name)).removeprefix("torch.")
    return LoadedModel(
        model=model, tokenizer=tokenizer, name=name, device=device, dtype=actual_dtype, source=source
    )
