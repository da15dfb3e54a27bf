"""`--compile` (transformers engine): a static KV cache and `torch.compile` of the single-token decode step.

A GPU decodes one token in far less time than the Python and kernel launches around it take; a static cache
gives every decode step the same shapes, so the step compiles once (with CUDA graphs on a GPU) and the
compiled graph is reused for every later step and turn. Prefill stays eager. generate itself runs the
compiled step (its `compile_config`), so logits processors, stop strings, the streamer and Ctrl-C work as
they do without it.

The cache is sized to the context in use: the next power of two of prompt + max_new_tokens (at least
MIN_CACHE), capped at the model's context window. It only grows; growing copies the kept prefix into the
bigger cache, and the first decode step at the new size compiles once more. Keeping a prefix of n tokens is
a crop of the static cache's length: the next writes go at n, and the causal mask hides the stale slots.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from typing import Any, Protocol

import torch
from transformers import CompileConfig, GenerationConfig, StaticCache

from qwenchat.engines.api import EngineError

MIN_CACHE = 512  # small conversations share one size, so one compiled graph


class CompileError(EngineError):
    """--compile cannot be used here (another engine, no C++ compiler for a CPU build)."""


def capacity(need: int, window: int | None) -> int:
    """The static cache size for `need` positions: a power of two, at least MIN_CACHE, at most the window."""
    size = MIN_CACHE
    while size < need:
        size *= 2
    return min(size, window) if window else size


class StaticDecode:
    """One engine's compiled decode: the compile config (the same object every turn, so generate reuses its
    compiled call) and the size of the static cache."""

    def __init__(self, model: Any, backend: str | Callable = "inductor", mode: str | None = None) -> None:
        self.model = model
        if mode is None and backend == "inductor" and model.device.type == "cuda":
            mode = "reduce-overhead"  # CUDA graphs: the launches are what a GPU decode step waits on
        self.compile_config = CompileConfig(dynamic=False, backend=backend, mode=mode)
        self.compile_config._compile_all_devices = True  # transformers compiles only on accelerators itself
        self.window: int | None = getattr(model.config, "max_position_embeddings", None)
        self.size = 0  # the size new caches get; 0 until the first turn

    def want(self, need: int) -> None:
        """Room for `need` positions from now on (the conversation grew)."""
        self.size = max(self.size, capacity(need, self.window))

    def new_cache(self) -> StaticCache:
        # Its length counter is a graph input: the same kind of tensor wherever the cache is made (a warm-up
        # or background prefill runs in inference mode, a turn does not), or the step compiles again.
        with torch.inference_mode(False):
            return StaticCache(config=self.model.config, max_cache_len=self.size or MIN_CACHE)

    def fit(self, cache: Any, keep: int) -> Any:
        """`cache` (holding `keep` positions) when it has the wanted size, else a cache of that size with
        those positions copied in: the prefix stays reused, the decode step compiles once for the new size."""
        if not isinstance(cache, StaticCache) or cache.get_max_length() >= self.size:
            return cache
        bigger = self.new_cache()
        with torch.inference_mode():
            for old, new in zip(cache.layers, bigger.layers, strict=True):
                if not old.is_initialized:
                    continue
                new.lazy_initialization(old.keys[:, :, :0], old.values[:, :, :0])
                new.keys[:, :, :keep].copy_(old.keys[:, :, :keep])
                new.values[:, :, :keep].copy_(old.values[:, :, :keep])
                new.cumulative_length.fill_(keep)
        return bigger

    def prepare(
        self, settings: dict[str, Any], config: GenerationConfig, prompt_tokens: int, *, eager: bool
    ) -> None:
        """A turn's part: room in the static cache for prompt + answer, and generate's settings for the
        compiled step (eager for a turn that reads the logits through a hook: `:probs`). Raises CompileError
        for what the static cache cannot do (prompt lookup drafts)."""
        if settings.get("prompt_lookup_num_tokens"):
            raise CompileError(
                "prompt lookup does not combine with --compile; :conf prompt_lookup_num_tokens=0 turns it off"
            )
        self.want(prompt_tokens + (config.max_new_tokens or 0))
        room = self.size - prompt_tokens
        if room < 1:
            raise CompileError(f"the prompt ({prompt_tokens} tokens) fills the static cache ({self.size})")
        if config.max_new_tokens is None or config.max_new_tokens > room:
            config.max_new_tokens = room  # the answer ends at the context window
        config.compile_config = self.compile_config
        config.disable_compile = eager

    def warm_up(self, max_new_tokens: int | None, prompt_tokens: int = 64) -> None:
        """Compile the decode step now, for the cache size a first turn of this length gets: a wait at
        start-up (under a spinner, Ctrl-C works) instead of a pause inside the first answer (Ctrl-C waits)."""
        self.want(prompt_tokens + (max_new_tokens or 0))
        ids = torch.zeros((1, 2), dtype=torch.long, device=self.model.device)
        # three tokens, end of sequence suppressed: at least one decode step runs (and compiles)
        config = GenerationConfig(max_new_tokens=3, min_new_tokens=3, do_sample=False)
        config.compile_config = self.compile_config
        with torch.inference_mode():
            self.model.generate(
                input_ids=ids,
                attention_mask=torch.ones_like(ids),
                generation_config=config,
                past_key_values=self.new_cache(),
            )


class Compilable(Protocol):
    """What `enable` needs of the transformers engine (which imports this module)."""

    model: Any
    draft_model: Any
    static: StaticDecode | None

    def reset(self) -> None: ...


def enable(engine: Compilable, backend: str | Callable = "inductor", mode: str | None = None) -> StaticDecode:
    """Switch a transformers engine to the static cache and the compiled decode step."""
    if backend == "inductor" and engine.model.device.type == "cpu" and not _has_cxx():
        raise CompileError("--compile on a CPU needs a C++ compiler (g++ or clang++) for torch.compile")
    if engine.draft_model is not None:
        raise CompileError("--compile does not combine with --draft-model (speculative decoding)")
    engine.static = StaticDecode(engine.model, backend, mode)
    engine.reset()  # the kept cache is a dynamic one
    return engine.static


def _has_cxx() -> bool:
    return any(shutil.which(name) for name in ("g++", "c++", "clang++"))
