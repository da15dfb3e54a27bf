"""Turn what the user typed into a loaded model: resolve the spec, download if needed (`hub.py`, `demo.py`),
pick device/dtype, apply adapters.

torch, transformers and peft are imported lazily so that `--help` and the pure helpers
stay fast. Nothing here prints: callers pass a `progress` callback. Every user-facing failure is a
LoadError with one line of text.
"""

from __future__ import annotations

import importlib.util
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from qwenchat.errors import first_line
from qwenchat.models import LoadError, demo
from qwenchat.models.hub import snapshot
from qwenchat.models.progress import Progress, say
from qwenchat.paths import expand_user

if TYPE_CHECKING:
    import torch

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
ATTN_IMPLEMENTATIONS = ("sdpa", "eager", "flash_attention_2")
LORA_HINT = "LoRA adapters need peft: pip install 'qwenchat[lora]'"
QUANT_HINT = "8-bit/4-bit loading needs bitsandbytes: pip install 'qwenchat[quant]'"
ADAPTER_CONFIG = "adapter_config.json"
# PEFT methods that feed virtual tokens through past_key_values: they clash with the engine's KV cache.
_PROMPT_LEARNING = {"PROMPT_TUNING", "MULTITASK_PROMPT_TUNING", "P_TUNING", "PREFIX_TUNING", "CPT"}


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
    adapters: list[str] = field(default_factory=list)  # PEFT adapter dirs or hub ids, applied in order
    merge_adapter: bool = False
    load_in_8bit: bool = False
    load_in_4bit: bool = False
    attn_implementation: str | None = None  # sdpa|eager|flash_attention_2; None: the model's default


@dataclass
class LoadedModel:
    model: Any
    tokenizer: Any
    name: str
    device: str  # "cpu", "cuda:0", "cuda (2 GPUs)"
    dtype: str  # "bfloat16", ...
    source: ModelSource
    adapters: list[str] = field(default_factory=list)  # display names, for the banner
    weights: Path | None = None  # the local folder or .gguf file the weights came from (fingerprints)
    processor: Any = None  # a vision chat model's image processor (AutoImageProcessor): images in messages


# Vision chat models whose prompts the transformers engine builds itself (engines/transformers/vision.py):
# told from the config's model_type, never from code the checkpoint brings.
VISION_MODEL_TYPES = ("qwen2_vl", "qwen2_5_vl")


def is_vision_config(config: Any) -> bool:
    return getattr(config, "model_type", None) in VISION_MODEL_TYPES


def processor_template(model_dir: Path) -> str | None:
    """The chat template a vision checkpoint keeps beside its processor (chat_template.jinja, or the
    "chat_template" of chat_template.json) when its tokenizer has none."""
    jinja = model_dir / "chat_template.jinja"
    if jinja.is_file():
        return jinja.read_text(encoding="utf-8")
    try:
        data = json.loads((model_dir / "chat_template.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    template = data.get("chat_template") if isinstance(data, dict) else None
    return template if isinstance(template, str) else None


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
    path = expand_user(spec)
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
    if _is_repo_id(spec):
        return ModelSource(kind="hub", spec=spec, path=None, repo_id=spec)
    raise LoadError(f"not a model directory, .gguf file or hub id (owner/name): {spec}")


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
    return snapshot(source.repo_id, options, progress, marker="config.json", what="")


# --- adapters ------------------------------------------------------------------------------------------


def _is_repo_id(spec: str) -> bool:
    return bool(_REPO_ID.match(spec)) and ".." not in spec and "--" not in spec


def resolve_adapter(spec: str) -> ModelSource:
    """Classify an --adapter value (filesystem only): a dir with adapter_config.json, or a hub id."""
    spec = spec.strip()
    path = expand_user(spec)
    if path.is_dir():
        if not (path / ADAPTER_CONFIG).is_file():
            raise LoadError(f"{spec} is not a PEFT adapter: it has no {ADAPTER_CONFIG}")
        return ModelSource(kind="dir", spec=spec, path=path.resolve(), repo_id=None)
    if path.exists():
        raise LoadError(f"{spec} is not a PEFT adapter: expected a directory with {ADAPTER_CONFIG}")
    if spec and not _looks_like_path(spec) and _is_repo_id(spec):
        return ModelSource(kind="hub", spec=spec, path=None, repo_id=spec)
    raise LoadError(f"no such adapter directory: {spec}")


def _adapter_dir(source: ModelSource, options: LoadOptions, progress: Progress) -> Path:
    if source.kind == "hub" and source.repo_id:
        return snapshot(source.repo_id, options, progress, marker=ADAPTER_CONFIG, what="adapter")
    assert source.path is not None
    return source.path


def _adapter_type(path: Path, label: str) -> str:
    """The adapter's peft_type, after checking that qwenchat can use it."""
    try:
        config = json.loads((path / ADAPTER_CONFIG).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise LoadError(f"adapter {label}: unreadable {ADAPTER_CONFIG} ({first_line(exc)})") from None
    peft_type = str(config.get("peft_type", "")).upper() if isinstance(config, dict) else ""
    if not peft_type:
        raise LoadError(f"adapter {label}: {ADAPTER_CONFIG} has no peft_type (not a PEFT adapter)")
    if peft_type in _PROMPT_LEARNING:
        raise LoadError(f"adapter {label} is a {peft_type} adapter; only LoRA-style adapters are supported")
    return peft_type


def _adapter_error(exc: BaseException, label: str, name: str) -> LoadError:
    text = str(exc)
    shapes = re.search(r"with shape torch\.Size\((\[[^]]*\])\).*? model is torch\.Size\((\[[^]]*\])\)", text)
    if "size mismatch" in text:
        detail = f" ({shapes.group(1)} in the adapter, {shapes.group(2)} in the model)" if shapes else ""
        return LoadError(
            f"adapter {label} does not fit {name}: weight shapes differ{detail}; "
            "was it trained for another base model?"
        )
    return LoadError(f"could not apply adapter {label} to {name}: {first_line(exc)}")


def _apply_adapters(
    model: Any, adapters: list[tuple[str, Path]], name: str, merge: bool, progress: Progress
) -> Any:
    """Wrap `model` in a PeftModel with every adapter active at once; merged into the weights if asked."""
    from peft import PeftModel

    label = adapters[0][0]
    try:
        say(progress, f"applying adapter {label}")
        peft_model = PeftModel.from_pretrained(model, str(adapters[0][1]), adapter_name="default")
        names = ["default"]
        for i, (label, path) in enumerate(adapters[1:], start=1):
            say(progress, f"applying adapter {label}")
            peft_model.load_adapter(str(path), adapter_name=f"adapter{i}")
            names.append(f"adapter{i}")
        if len(names) > 1:
            # PeftModel.set_adapter takes one name; the tuner takes several and sums their deltas, which
            # is what merging them one after another gives too.
            peft_model.base_model.set_adapter(names, inference_mode=True)
        if merge:
            label = " + ".join(a for a, _ in adapters)
            say(progress, "merging the adapter into the weights")
            return peft_model.merge_and_unload()
        return peft_model
    except Exception as exc:  # peft raises many kinds (RuntimeError on shapes, ValueError on targets, ...)
        raise _adapter_error(exc, label, name) from None


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


def _peft_available() -> bool:
    return importlib.util.find_spec("peft") is not None


def _bitsandbytes_available() -> bool:
    return importlib.util.find_spec("bitsandbytes") is not None


def _flash_attn_available() -> bool:
    return importlib.util.find_spec("flash_attn") is not None


def check_options(options: LoadOptions, cuda_count: int) -> None:
    """Flag combinations and optional packages, checked before anything is downloaded or loaded."""
    if options.load_in_8bit and options.load_in_4bit:
        raise LoadError("--load-in-8bit and --load-in-4bit exclude each other; pick one")
    on_gpu = not options.cpu_only and cuda_count > 0
    if options.load_in_8bit or options.load_in_4bit:
        if not on_gpu:
            raise LoadError("8-bit/4-bit loading needs a CUDA GPU (bitsandbytes)")
        if not _bitsandbytes_available():
            raise LoadError(QUANT_HINT)
    impl = options.attn_implementation
    if impl is not None:
        if impl not in ATTN_IMPLEMENTATIONS:
            allowed = ", ".join(ATTN_IMPLEMENTATIONS)
            raise LoadError(f"--attn-implementation must be one of {allowed}; got {impl!r}")
        if impl == "flash_attention_2" and not on_gpu:
            raise LoadError("flash_attention_2 needs a CUDA GPU; on the CPU use --attn-implementation sdpa")
        if impl == "flash_attention_2" and not _flash_attn_available():
            raise LoadError(
                "flash_attention_2 needs the flash-attn package: pip install flash-attn "
                "(or use --attn-implementation sdpa)"
            )
    if options.merge_adapter and not options.adapters:
        raise LoadError("--merge-adapter needs at least one --adapter")
    if options.adapters and not _peft_available():
        raise LoadError(LORA_HINT)


def _quantization_config(options: LoadOptions, dtype: str | torch.dtype) -> Any:
    from transformers import BitsAndBytesConfig

    if options.load_in_8bit:
        return BitsAndBytesConfig(load_in_8bit=True)
    import torch

    compute = dtype if isinstance(dtype, torch.dtype) else None
    if compute is None:
        compute = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    # nf4 keeps more quality than the default fp4 at the same size.
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=compute)


def _display_name(source: ModelSource) -> str:
    if source.kind == "demo":
        return demo.DEMO_NAME
    if source.kind == "hub" and source.repo_id:
        return source.repo_id
    if source.path is not None:
        return source.path.name
    return source.spec


def _wrap(exc: BaseException, name: str, trusted: bool, attn: str | None = None) -> LoadError:
    message = str(exc)
    if not trusted and ("trust_remote_code" in message or "trust-remote-code" in message):
        return LoadError(
            f"{name} needs custom code from its repository; rerun with --trust-remote-code if you trust it"
        )
    if attn and ("attn" in message.lower() or "attention" in message.lower()):
        return LoadError(f"could not load {name} with --attn-implementation {attn}: {first_line(exc)}")
    return LoadError(f"could not load {name}: {first_line(exc)}")


def load(source: ModelSource, options: LoadOptions, progress: Progress = None) -> LoadedModel:
    """Download if needed, then load tokenizer and model on the chosen device and dtype, in eval mode.

    Adapters in `options.adapters` are applied on top (all active at once), merged if `merge_adapter`.
    """
    name = _display_name(source)
    import torch

    # Check flags, --gpus/--dtype and local adapter dirs before a download that could take minutes.
    cuda_count = 0 if options.cpu_only else torch.cuda.device_count()
    check_options(options, cuda_count)
    adapter_sources = [resolve_adapter(spec) for spec in options.adapters]
    device_map, device = choose_device_map(options, cuda_count)
    dtype = choose_dtype(options, on_gpu=device_map != "cpu")
    # Adapters are small: fetch and check them before a base download that may take minutes.
    adapters = [(_display_name(a), _adapter_dir(a, options, progress)) for a in adapter_sources]
    kinds = [(label, _adapter_type(adapter_path, label)) for label, adapter_path in adapters]
    if len({kind for _, kind in kinds}) > 1:
        listed = ", ".join(f"{label} ({kind})" for label, kind in kinds)
        raise LoadError(f"adapters of different kinds cannot be combined: {listed}")
    path = download(source, options, progress)

    # Always explicit: left unset, transformers asks "run the custom code? [y/N]" on stdin mid-load.
    kwargs: dict[str, Any] = {"trust_remote_code": options.trust_remote_code}
    if options.offline:
        kwargs["local_files_only"] = True  # no hub look-ups from transformers either
    if source.kind == "gguf":
        if not _gguf_available():
            raise LoadError("reading .gguf files needs the gguf package: pip install gguf")
        model_dir, kwargs["gguf_file"] = path.parent, path.name
    else:
        model_dir = path

    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    say(progress, f"loading tokenizer for {name}")
    vision = False
    processor = None
    try:
        if source.kind != "gguf":
            # The config is cheap and names custom code plainly; the tokenizer may fail vaguer first.
            vision = is_vision_config(AutoConfig.from_pretrained(model_dir, **kwargs))
        tokenizer = AutoTokenizer.from_pretrained(model_dir, **kwargs)
        if vision:
            from transformers import AutoImageProcessor

            processor = AutoImageProcessor.from_pretrained(model_dir, **kwargs)
            if tokenizer.chat_template is None:
                tokenizer.chat_template = processor_template(Path(model_dir))
    except (OSError, ValueError, KeyError, ImportError, RuntimeError, TypeError) as exc:
        raise _wrap(exc, name, options.trust_remote_code) from None

    model_kwargs = dict(kwargs, dtype=dtype, device_map=device_map)
    max_memory = choose_max_memory(options, cuda_count, lambda i: torch.cuda.mem_get_info(i)[0])
    if max_memory:
        model_kwargs["max_memory"] = max_memory
    if options.attn_implementation:
        model_kwargs["attn_implementation"] = options.attn_implementation
    quantized = ""
    if options.load_in_8bit or options.load_in_4bit:
        model_kwargs["quantization_config"] = _quantization_config(options, dtype)
        quantized = "8-bit" if options.load_in_8bit else "4-bit nf4"
    dtype_name = dtype if isinstance(dtype, str) else str(dtype).removeprefix("torch.")
    say(progress, f"loading {name} on {device} ({quantized or dtype_name})")
    try:
        if vision:
            from transformers import AutoModelForImageTextToText

            model = AutoModelForImageTextToText.from_pretrained(model_dir, **model_kwargs)
        else:
            model = AutoModelForCausalLM.from_pretrained(model_dir, **model_kwargs)
    except (OSError, ValueError, KeyError, ImportError, RuntimeError, TypeError) as exc:
        raise _wrap(exc, name, options.trust_remote_code, options.attn_implementation) from None
    if adapters:
        model = _apply_adapters(model, adapters, name, options.merge_adapter, progress)
    model.eval()
    actual_dtype = str(getattr(model, "dtype", dtype_name)).removeprefix("torch.")
    if quantized:
        actual_dtype = f"{quantized} ({actual_dtype})"
    suffix = " (merged)" if options.merge_adapter else ""
    return LoadedModel(
        model=model,
        tokenizer=tokenizer,
        name=name,
        device=device,
        dtype=actual_dtype,
        source=source,
        adapters=[label + suffix for label, _ in adapters],
        weights=path,
        processor=processor,
    )
