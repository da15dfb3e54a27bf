"""A GGUF with its projector (`--mmproj FILE`): images through llama-cpp-python's multimodal chat handlers
(Qwen25VLChatHandler for Qwen2-VL and Qwen2.5-VL, the Llava15ChatHandler family for the others).

Unverified: no projector weights are available where this was written, and the llama-cpp-python built for the
tests lacks its multimodal library (libmtmd, LLAVA_BUILD=OFF). What is tested is the wiring around it: the
flag's checks, the refusal without a projector, the one line when the library is missing. A turn with images
goes through the handler's own chat completion (its prompt, its cache), so the engine's kept cache is dropped
after it: the next text turn recomputes the prompt."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from qwenchat.engines.api import Chunk, EngineError, GenerationRequest, TurnStats
from qwenchat.images.datauri import data_uri

# The handler for a model, by words in its file name (lower case); the first that matches.
HANDLERS = (
    (("qwen2.5-vl", "qwen2.5vl", "qwen2_5_vl", "qwen2-vl", "qwen2vl", "qwen2_vl"), "Qwen25VLChatHandler"),
    (("minicpm",), "MiniCPMv26ChatHandler"),
    (("llava-v1.6", "llava-1.6", "llava16"), "Llava16ChatHandler"),
    (("moondream",), "MoondreamChatHandler"),
)
DEFAULT_HANDLER = "Llava15ChatHandler"
NO_MTMD = (
    "this llama-cpp-python has no multimodal library (libmtmd): reinstall it built with "
    "CMAKE_ARGS=-DLLAVA_BUILD=ON to use --mmproj"
)


def check_mmproj(path: str) -> Path:
    """The projector file, checked before anything loads; EngineError (one line) when it cannot be one."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise EngineError(f"--mmproj {path}: no such file")
    if p.suffix.lower() != ".gguf":
        raise EngineError(f"--mmproj {path}: a projector is a .gguf file (mmproj-*.gguf beside the model)")
    return p


def handler_name(model_name: str) -> str:
    low = model_name.lower()
    return next((name for words, name in HANDLERS if any(w in low for w in words)), DEFAULT_HANDLER)


def load_projector(mmproj: str, model_name: str) -> Any:
    """llama-cpp-python's chat handler for this model with its projector; EngineError when it cannot."""
    path = check_mmproj(mmproj)
    try:
        from llama_cpp import llama_chat_format as formats
    except ImportError as exc:
        raise EngineError(f"--mmproj needs llama-cpp-python's chat formats: {exc}") from None
    handlers = {name: getattr(formats, name, None) for name in {n for _, n in HANDLERS} | {DEFAULT_HANDLER}}
    cls = handlers.get(handler_name(model_name))
    if cls is None:
        raise EngineError(f"this llama-cpp-python has no {handler_name(model_name)}: upgrade it")
    try:
        return cls(clip_model_path=str(path), verbose=False)
    except (OSError, ImportError) as exc:  # the shared library is missing: FileNotFoundError, OSError
        if "mtmd" in str(exc) or "llava" in str(exc):
            raise EngineError(NO_MTMD) from None
        raise EngineError(f"--mmproj {mmproj}: {exc}") from None
    except ValueError as exc:
        raise EngineError(f"--mmproj {mmproj}: {exc}") from None


def content_parts(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Messages as the multimodal handlers take them: a message's images as image_url parts (data URIs), then
    its text."""
    out = []
    for m in messages:
        refs = m.get("images") or []
        m = {k: v for k, v in m.items() if k != "images"}
        if refs:
            m["content"] = [
                *({"type": "image_url", "image_url": {"url": data_uri(r)}} for r in refs),
                {"type": "text", "text": m["content"]},
            ]
        out.append(m)
    return out


def stream_with_projector(
    llm: Any, handler: Any, request: GenerationRequest, sampling: dict[str, Any], cancel: threading.Event
) -> Iterator[Chunk]:
    """One turn with images through the handler's chat completion; Ctrl-C stops it at the next token."""
    t0 = time.monotonic()
    t_first: float | None = None
    n = 0
    finish = "stop"
    try:
        llm.chat_handler = handler
        parts = llm.create_chat_completion(messages=content_parts(request.messages), stream=True, **sampling)
        for part in parts:
            if cancel.is_set():
                finish = "interrupted"
                break
            choice = part["choices"][0]
            text = choice.get("delta", {}).get("content") or ""
            if text:
                n += 1
                t_first = t_first or time.monotonic()
                yield Chunk(text=text, tokens=n)
            if choice.get("finish_reason") == "length":
                finish = "length"
    except Exception as exc:  # a native error: the turn's one line
        yield Chunk(finish_reason="error", error=f"llama.cpp with images: {exc}")
        return
    stats = TurnStats.timed(
        prompt_tokens=0, reused_tokens=0, generated_tokens=n, t0=t0, t_first=t_first,
        t_end=time.monotonic(), finish_reason=finish,
    )  # fmt: skip
    yield Chunk(finish_reason=finish, stats=stats)
