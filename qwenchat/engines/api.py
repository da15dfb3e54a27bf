"""What the REPL needs from an engine, kept free of torch so tests and `--help` stay light.

`Engine` is what every engine does. What only some do is declared by the capability protocols below and
asked with `isinstance(engine, SupportsX)`, never probed with getattr: an engine that has the methods has
the capability (they are runtime-checkable, so a test's fake qualifies by having them too). Where a
capability can vary with the loaded model, the protocol declares a method or property that says so.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from qwenchat.errors import UserError

if TYPE_CHECKING:
    from qwenchat.models.templates import TemplateChoice
    from qwenchat.probs.record import TokenProb
    from qwenchat.settings import SettingsSchema

# Why a turn ended: the model said it was done, it hit max_new_tokens, the user pressed Ctrl-C,
# or generate raised (the message is in Chunk.error).
FINISH_REASONS = ("stop", "length", "interrupted", "error")


# Settings that mean nothing without sampling.
SAMPLING_KEYS = ("temperature", "top_p", "top_k", "min_p", "typical_p", "epsilon_cutoff", "eta_cutoff")


def request_settings(settings: dict[str, Any]) -> dict[str, Any]:
    """The request-level rules, applied once where a request is built, for every engine: temperature 0
    means greedy, and greedy drops the sampling knobs. A missing do_sample stays missing: the engine's own
    default applies (the model's generation_config, llama.cpp's defaults, the server's)."""
    out = dict(settings)
    if out.get("temperature") == 0:
        out["do_sample"] = False
    if out.get("do_sample") is False:
        for key in SAMPLING_KEYS:
            out.pop(key, None)
    return out


@dataclass
class TurnStats:
    """Numbers for one turn, shown by `:stats` and printed by the benchmarks."""

    prompt_tokens: int = 0
    reused_tokens: int = 0  # prompt tokens whose keys/values came from the kept cache
    prefilled_tokens: int = 0  # prompt tokens that went through the model this turn
    generated_tokens: int = 0
    ttft_s: float = 0.0  # from the call to the first generated token
    prefill_tps: float = 0.0
    decode_tps: float = 0.0
    total_s: float = 0.0
    finish_reason: str = "stop"
    peak_gpu_mem_bytes: int | None = None
    # Speculative decoding (prompt lookup, a draft model): tokens drafted and accepted; None when off.
    drafted_tokens: int | None = None
    accepted_tokens: int | None = None

    @property
    def acceptance(self) -> float | None:
        if not self.drafted_tokens:
            return None
        return (self.accepted_tokens or 0) / self.drafted_tokens

    thinking_tokens: int | None = None  # of generated_tokens, those inside a think block (None: unknown)
    # An OpenAI-compatible server's `system_fingerprint`: answers with different ones may differ.
    system_fingerprint: str | None = None

    @classmethod
    def timed(
        cls,
        *,
        prompt_tokens: int,
        reused_tokens: int,
        generated_tokens: int,
        t0: float,
        t_first: float | None,
        t_end: float,
        finish_reason: str,
        peak_gpu_mem_bytes: int | None = None,
        drafted_tokens: int | None = None,
        accepted_tokens: int | None = None,
        system_fingerprint: str | None = None,
    ) -> TurnStats:
        """A turn's stats from its clock readings: the call, the first generated token (None when none
        came) and the end. Without a first token there is no prefill speed: the prefill may have been cut."""
        prefilled = max(prompt_tokens - reused_tokens, 0)  # a server may count its cache oddly
        ttft = (t_first or t_end) - t0
        decode_s = t_end - t_first if t_first is not None else 0.0
        return cls(
            prompt_tokens=prompt_tokens,
            reused_tokens=reused_tokens,
            prefilled_tokens=prefilled,
            generated_tokens=generated_tokens,
            ttft_s=ttft,
            prefill_tps=prefilled / ttft if ttft > 0 and t_first is not None else 0.0,
            decode_tps=(generated_tokens - 1) / decode_s if generated_tokens > 1 and decode_s > 0 else 0.0,
            total_s=t_end - t0,
            finish_reason=finish_reason,
            peak_gpu_mem_bytes=peak_gpu_mem_bytes,
            drafted_tokens=drafted_tokens,
            accepted_tokens=accepted_tokens,
            system_fingerprint=system_fingerprint,
        )

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class Chunk:
    """One piece of a streamed answer. The last chunk of a turn has `finish_reason` (and stats) set."""

    text: str = ""
    tokens: int = 0  # generated tokens so far
    finish_reason: str | None = None
    stats: TurnStats | None = None
    error: str | None = None
    # Set on a turn's first chunk by engines that know the prompt: True when the template left a
    # `<think>` open, so the answer starts inside a think block.
    think_open: bool | None = None
    # Set while the prompt is prefilled in chunks: (prompt tokens computed, prompt tokens to compute).
    prefill: tuple[int, int] | None = None
    # With token probabilities on (`:probs on`): the records (qwenchat.probs.record.TokenProb) of the answer
    # tokens that arrived since the previous chunk.
    probs: list[Any] | None = None


@dataclass
class GenerationRequest:
    """Everything one turn needs: the chat messages and the sampling settings (already validated)."""

    messages: list[dict[str, Any]]
    settings: dict[str, Any] = field(default_factory=dict)
    seed: int | None = None
    # Continue the last assistant message instead of opening a new one (`:continue`).
    continue_final: bool = False
    # Record this many alternatives per answer token (`:probs on K`); 0: record nothing.
    probs_k: int = 0
    # `:branch`: the answer starts with these token ids, then this text (tokenized by the engine), and the
    # model goes on from there. An engine without token ids (a server) gets the text only.
    prefix_ids: list[int] | None = None
    prefix_text: str = ""
    # Extra chat-template variables (enable_thinking, see reasoning.py); servers get chat_template_kwargs.
    template_kwargs: dict[str, Any] = field(default_factory=dict)
    tools: list[dict[str, Any]] | None = None  # OpenAI-style function definitions (tools.py)
    thinking_budget: int | None = None  # close the think block after this many tokens (reasoning.py)
    # Constrain the answer to JSON valid for this schema (`:json`); None: free text.
    json_schema: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        self.settings = request_settings(self.settings)


class Engine(Protocol):
    """What every engine does; the REPL depends on this and on the capability protocols below only."""

    name: str

    def stream(self, request: GenerationRequest, cancel: threading.Event) -> Iterator[Chunk]:
        """Yield chunks until the turn ends; must end promptly once `cancel` is set."""
        ...

    def default_settings(self) -> dict[str, Any]:
        """The model's own generation defaults (temperature, top_p, max_new_tokens, ...)."""
        ...

    def settings_schema(self) -> SettingsSchema:
        """The settings this engine honours; `:conf` refuses the others, with the reason."""
        ...

    def reset(self) -> None:
        """Forget any cached state (KV cache); the next turn starts from scratch."""
        ...

    def render_prompt(self, request: GenerationRequest) -> str:
        """The exact text the model would see for this request (chat template applied)."""
        ...

    def count_tokens(self, request: GenerationRequest) -> int: ...

    @property
    def context_window(self) -> int | None: ...


@runtime_checkable
class SupportsWarm(Protocol):
    """Computes, while the user types, what the next prompt surely starts with (the in-process engines)."""

    def warm(self, requests: list[GenerationRequest]) -> bool:
        """Start background work for the next prompt, given with stand-ins for the message not yet typed;
        True when work was started. It never changes an answer."""
        ...


@runtime_checkable
class SupportsSettle(Protocol):
    """Has background work (see SupportsWarm) to stop or wait for."""

    def settle(self) -> None:
        """Stop background work at its next step and wait for it (before exit: nothing may run then)."""
        ...

    def idle(self) -> float:
        """Let background work finish (benchmarks: a typing pause); the seconds it took."""
        ...


@runtime_checkable
class SupportsFingerprint(Protocol):
    """Says what decides its answers' numbers (engine, weights by SHA-256, dtype, device, threads, library
    versions, CPU); kept in session files and batch records so that runs that differ can say why."""

    def fingerprint(self) -> dict[str, Any]: ...


@runtime_checkable
class SupportsClose(Protocol):
    """Holds what must be let go when the engine is replaced (`:model`): a worker thread, a native model."""

    def close(self) -> None:
        """Stop background work and threads and free native memory; the engine is not used afterwards."""
        ...


@runtime_checkable
class SupportsTemplateVariables(Protocol):
    """Applies the chat template itself, so it can tell which variables the template reads."""

    def template_variables(self) -> set[str] | None:
        """The variables the chat template reads (reasoning: does it have the enable_thinking switch?)."""
        ...


@runtime_checkable
class SupportsDetokenize(Protocol):
    """Knows token ids: `:branch` shows the kept part of an answer as text."""

    def detokenize(self, ids: list[int]) -> str: ...


@runtime_checkable
class SupportsThinkingBudget(Protocol):
    """Can close a think block after a budget of tokens (`:reasoning budget`): it forces the closing tag
    in-process; a server's API has no such field."""

    @property
    def supports_thinking_budget(self) -> bool: ...


@runtime_checkable
class SupportsAdapters(Protocol):
    """Switches LoRA adapters at run time (`:adapter`, compare and batch variants)."""

    def adapters(self) -> list[str]:
        """The switchable adapters' names; [] when none is loaded."""
        ...

    def active_adapter(self) -> str | None:
        """The active adapter's name, "on" for all of them together, None for the base model."""
        ...

    def describe_adapter(self) -> str | None:
        """One line on the active adapters; None without switchable adapters."""
        ...

    def set_adapter(self, name: str | None) -> str | None:
        """Switch ("off"/None, "on", a name); returns the canonical name; AdapterError when it cannot."""
        ...


@runtime_checkable
class SupportsSchemaPreparation(Protocol):
    """Constrains JSON answers in-process (`:json`) with a grammar and its own copy of the tokenizer, which
    can be built when the schema is set rather than inside the first answer."""

    def check_schema(self, schema: dict[str, Any]) -> None:
        """Compile the schema's grammar now; SchemaError (one line) when it cannot be used."""
        ...

    def schema_tokenizer_ready(self) -> bool: ...

    def prepare_schema_tokenizer(self) -> None:
        """Build the grammar's copy of the tokenizer (about a second; once per tokenizer)."""
        ...


@runtime_checkable
class SupportsCompiledDecode(Protocol):
    """May run a compiled decode step (`--compile`), which is built on first use unless warmed up."""

    @property
    def compiled(self) -> bool:
        """Whether the decode step is the compiled one."""
        ...

    def warm_up_compiled(self, max_new_tokens: int | None) -> None:
        """Compile now, for the cache size a first turn gets; raises when the backend cannot."""
        ...

    def drop_compiled(self) -> None:
        """Decode eagerly from now on (the compiled step failed to build)."""
        ...


@runtime_checkable
class SupportsTemplateChoice(Protocol):
    """Applies a chat template in-process, chosen at load (models/templates.py): the model's own, one from a
    file, or plain completion (no template: the conversation is the raw text)."""

    template_choice: TemplateChoice


@runtime_checkable
class SupportsImages(Protocol):
    """Can take images in messages (a vision chat model, a GGUF with its projector, a server). A message's
    images come as `images` (qwenchat.images.ref.ImageRef) in its chat dict; an engine without this
    capability refuses them."""

    @property
    def takes_images(self) -> bool:
        """Whether the loaded model takes images now (llama.cpp: only with its projector, --mmproj)."""
        ...

    def image_tokens(self, image: Any, settings: dict[str, Any]) -> int | None:
        """How many prompt tokens the image (an ImageRef) takes with these settings (a pixel budget may
        change it); None when the engine cannot tell."""
        ...


def has_images(messages: list[dict[str, Any]]) -> bool:
    """Whether any message of a request carries images."""
    return any(m.get("images") for m in messages)


@runtime_checkable
class SupportsScore(Protocol):
    """Scores a given answer teacher-forced (`:score`, a batch prompt's `reference`): the in-process engines
    from their kept cache, the endpoint where its server returns prompt logprobs (else ScoreError)."""

    def score(self, request: GenerationRequest, answer: str, cancel: threading.Event) -> list[TokenProb]:
        """The answer's tokens after the prompt `request` renders (its last message is the user's), each
        with its raw log-probability and the top `request.probs_k` alternatives; ScoreError (one line) when
        it cannot be scored or `cancel` was set. The kept cache stays as the next turn would find it."""
        ...


class EngineError(UserError):
    """A failure worth one line to the user (bad template, out of memory, ...)."""


class ScoreError(EngineError):
    """A given answer that could not be scored (too long, interrupted, a server without prompt logprobs);
    nothing changed."""


def finish_scoring(chunks: Iterator[Chunk], cancel: threading.Event) -> None:
    """Run a scoring job that an engine put through its turn (lock, background work settled, worker thread,
    Ctrl-C) to its end; ScoreError for its error or an interruption."""
    final: Chunk | None = None
    for chunk in chunks:
        final = chunk
    if final is not None and final.error:
        raise ScoreError(final.error)
    if cancel.is_set() or final is None or final.finish_reason == "interrupted":
        raise ScoreError("scoring interrupted; nothing changed")
