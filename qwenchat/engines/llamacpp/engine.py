"""The llama.cpp engine: a GGUF through llama-cpp-python (the `llamacpp` extra), in this process.

The prompt is rendered with the GGUF's own chat template and tokenized here, and the tokens go to the
low-level `Llama.generate`, which keeps the KV cache of the previous turn: only the part of the prompt
after the longest common prefix is evaluated. The prompt is evaluated in batches and tokens are sampled
one at a time in a worker thread, so a set `cancel` stops the turn within one batch or one token.
"""

from __future__ import annotations

import codecs
import functools
import json
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from qwenchat.engines.api import Chunk, EngineError, GenerationRequest, finish_scoring, has_images
from qwenchat.engines.job import Job, Outcome, PromptError, error_line
from qwenchat.engines.llamacpp.load import _load_llama, amx_risk, physical_cores
from qwenchat.engines.llamacpp.lookup import lookup_sample
from qwenchat.engines.llamacpp.template import ChatTemplate
from qwenchat.engines.prefix_cache import MessageBounds, Plan, PrefixCache
from qwenchat.engines.speculative import lookup_tokens
from qwenchat.engines.turn import Background, Turns
from qwenchat.models import identity, templates
from qwenchat.probs.record import answer_prefix
from qwenchat.reasoning import CLOSE_TEXT, BudgetTracker, template_variables
from qwenchat.settings import COMMON, SettingsSchema
from qwenchat.text.think import prompt_opens_think

INSTALL_HINT = "pip install 'qwenchat[llamacpp]'"
# What llama.cpp samples with when nobody says otherwise (its CLI and server defaults).
LLAMACPP_DEFAULTS: dict[str, Any] = {
    "do_sample": True,
    "temperature": 0.8,
    "top_p": 0.95,
    "top_k": 40,
    "min_p": 0.05,
    "repetition_penalty": 1.0,
}
# GGUF metadata that newer converters write with the model's recommended sampling.
_GGUF_SAMPLING = {
    "general.sampling.temp": ("temperature", float),
    "general.sampling.top_p": ("top_p", float),
    "general.sampling.top_k": ("top_k", int),
    "general.sampling.min_p": ("min_p", float),
    "general.sampling.penalty_repeat": ("repetition_penalty", float),
}
SUPPORTED_SETTINGS = (
    "do_sample",
    "temperature",
    "top_p",
    "top_k",
    "min_p",
    "typical_p",
    "repetition_penalty",
    "max_new_tokens",
    "stop_strings",
    "prompt_lookup_num_tokens",
)
SCHEMA = SettingsSchema("the llama.cpp engine", {k: COMMON[k] for k in SUPPORTED_SETTINGS})


class LlamaCppEngine(Background):
    """One GGUF, one conversation at a time; the KV cache of the last turn is kept for the next."""

    supports_thinking_budget = True  # :reasoning budget (the closing tag is forced in-process)

    def __init__(
        self,
        gguf_path: str | os.PathLike[str],
        n_ctx: int = 4096,
        n_threads: int | None = None,
        *,
        n_batch: int = 256,
        prefill_chunk: int = 128,
        n_gpu_layers: int = 0,
        repack: bool | None = None,
        reuse_cache: bool = True,
        defaults: dict[str, Any] | None = None,
        name: str | None = None,
        chat_template: str | None = None,
        plain: bool = False,
        mmproj: str | None = None,
    ) -> None:
        if mmproj is not None:  # before the slow load: a bad path costs no wait
            from qwenchat.engines.llamacpp.vision import check_mmproj

            check_mmproj(mmproj)
        try:
            import llama_cpp
        except ImportError:
            raise EngineError(f"the llama.cpp engine needs llama-cpp-python: {INSTALL_HINT}") from None
        self._llama_cpp = llama_cpp
        path = Path(gguf_path)
        if not path.is_file():
            raise EngineError(f"no GGUF file at {path}")
        # ggml's tiled matmul (on by default in llama.cpp 0.3.3x) costs seconds per small batch here: a
        # 13-token prefill took 8.4 s with it and 1.4 s without. A turn's new tokens are such a batch, so
        # it is off unless the user set GGML_CPU_TILED_MM; it must be set before the first matmul.
        os.environ.setdefault("GGML_CPU_TILED_MM", "0")
        self.repack = (not amx_risk(llama_cpp)) if repack is None else repack
        kwargs = dict(
            model_path=str(path),
            n_ctx=n_ctx,
            n_threads=n_threads or physical_cores(),
            n_batch=n_batch,
            n_gpu_layers=n_gpu_layers,
            verbose=False,
        )
        try:
            self.llm = _load_llama(llama_cpp, kwargs, extra_buffers=self.repack)
        except (ValueError, RuntimeError, OSError) as exc:
            raise EngineError(f"llama.cpp could not load {path.name}: {error_line(exc)}") from None
        self.path = path
        self.reuse_cache = reuse_cache  # False: every turn evaluates the whole prompt (--no-cache-reuse)
        self._turns = Turns("qwenchat-llamacpp")
        self.name = name or path.stem
        self.n_batch = n_batch
        self.prefill_chunk = min(prefill_chunk, n_batch)  # prefill batches start at its multiples
        self._prefix = PrefixCache()  # what of the cache a new prompt keeps (prefix_cache.py)
        self._bounds = MessageBounds(lambda r, gen: self._tokenize(self.render_prompt(r, gen)))
        # --no-template, --chat-template FILE, the GGUF's own, or plain completion for a model without one
        bos = self._token_text(self.llm.token_bos())
        starts_with_bos = self.llm.tokenize(b"a", add_bos=True)[:1] == [self.llm.token_bos()]
        self.template_choice = templates.choose(
            self.llm.metadata.get("tokenizer.chat_template"),
            path.name,
            file=chat_template,
            plain=plain,
            bos=bos if starts_with_bos else "",
        )
        self.template_source = self.template_choice.source
        self.template = ChatTemplate(self.template_source, bos, self._token_text(self.llm.token_eos()))
        self._defaults = dict(defaults) if defaults is not None else self._gguf_defaults()
        self._vocab = llama_cpp.llama_model_get_vocab(self.llm.model)
        self.n_threads = kwargs["n_threads"]
        self.n_gpu_layers = n_gpu_layers

        self.projector: Any = None  # --mmproj: llama-cpp-python's multimodal chat handler (vision.py)
        if mmproj is not None:
            from qwenchat.engines.llamacpp.vision import load_projector

            self.projector = load_projector(mmproj, path.name)

    @functools.cached_property
    def weights_sha256(self) -> str | None:
        """The weights named by content (identity.py): read once, on the first fingerprint."""
        return identity.weights_sha256(self.path)

    def fingerprint(self) -> dict[str, Any]:
        """What decides this engine's numbers (identity.py): the GGUF, threads, build and CPU."""
        return {
            "engine": "llama.cpp",
            "model": self.name,
            "weights_sha256": self.weights_sha256,
            "revision": identity.revision(self.path),
            "device": "cpu" if not self.n_gpu_layers else f"gpu ({self.n_gpu_layers} layers)",
            "threads": self.n_threads,
            "repack": self.repack,
            **identity.runtime("llama-cpp-python"),
        }

    # -- images (--mmproj, vision.py) ---------------------------------------------------------
    @property
    def takes_images(self) -> bool:
        return self.projector is not None

    def image_tokens(self, image: Any, settings: dict[str, Any]) -> int | None:
        return None  # the projector's handler counts them as it evaluates

    # -- facts about the model ---------------------------------------------------------------
    def _token_text(self, token_id: int) -> str:
        if token_id is None or token_id < 0:
            return ""
        return self.llm.detokenize([token_id], special=True).decode("utf-8", errors="replace")

    def _gguf_defaults(self) -> dict[str, Any]:
        from qwenchat.models import demo

        if self.path.name == demo.GGUF_NAME:  # the demo GGUF carries no sampling settings; Qwen's apply
            return dict(demo.GENERATION_DEFAULTS)
        out = dict(LLAMACPP_DEFAULTS)
        for key, (setting, kind) in _GGUF_SAMPLING.items():
            if key in self.llm.metadata:
                try:
                    out[setting] = kind(self.llm.metadata[key])
                except ValueError:
                    pass
        return out

    @property
    def context_window(self) -> int | None:
        # llama.cpp may pad the context it allocates; the Python side's token buffer is the real limit.
        return min(self.llm.n_ctx(), len(self.llm.input_ids))

    def default_settings(self) -> dict[str, Any]:
        return dict(self._defaults)

    def settings_schema(self) -> SettingsSchema:
        return SCHEMA

    def reset(self) -> None:
        with self._turns.lock:
            self._turns.settle()
            self._invalidate()

    def warm(self, requests: list[GenerationRequest]) -> bool:
        """While the user types: evaluate the batches every one of `requests` (the next prompt with stand-ins
        for the message not yet typed) starts with, the last answer's segment, as the transformers engine
        does (prefix_cache.py)."""
        self._turns.settle()
        if not self.reuse_cache:
            return False
        plans = [self.plan(r, self.encode(r)) for r in requests]
        limit = self.context_window or 0
        return self._prefix.warm(self._turns, plans, self._warm_fill, self._invalidate, limit=limit)

    def _warm_fill(self, plan: Plan, cancel: threading.Event) -> None:
        self._evaluate(plan, self._keep(plan), cancel, lambda _: None)

    def plan(self, request: GenerationRequest, ids: list[int]) -> Plan:
        """The batches this prompt is evaluated in: its messages' segments (prefix_cache.py)."""
        return self._bounds(request, ids).plan(ids, self.prefill_chunk)

    def close(self) -> None:
        """Stop the worker thread and free the model's native memory (`:model` releases the engine)."""
        super().close()
        try:
            self.llm.close()
        except Exception:  # already closed; nothing else holds it
            pass

    def _invalidate(self) -> None:
        self.llm.reset()
        self._prefix.forget()

    def render_prompt(self, request: GenerationRequest, generation_prompt: bool = True) -> str:
        return self.template.render(
            request.messages,
            continue_final=request.continue_final,
            generation_prompt=generation_prompt,
            tools=request.tools,
            **request.template_kwargs,
        )

    def template_variables(self) -> set[str] | None:
        return template_variables(self.template_source)

    def _tokenize(self, prompt: str) -> list[int]:
        # The template writes any BOS itself, as transformers' apply_chat_template assumes.
        return self.llm.tokenize(prompt.encode("utf-8"), add_bos=False, special=True)

    def encode(self, request: GenerationRequest) -> list[int]:
        return self._tokenize(self.render_prompt(request))

    def count_tokens(self, request: GenerationRequest) -> int:
        return len(self.encode(request))

    def detokenize(self, ids: list[int]) -> str:
        """Answer tokens as text (`:branch` shows the kept part of an answer with it)."""
        return self.llm.detokenize(ids).decode("utf-8", errors="replace")

    def _is_end(self, token: int) -> bool:
        return bool(self._llama_cpp.llama_vocab_is_eog(self._vocab, token))

    # -- generation --------------------------------------------------------------------------
    def stream(self, request: GenerationRequest, cancel: threading.Event) -> Iterator[Chunk]:
        if self.projector is not None and has_images(request.messages):
            return self._stream_images(request, cancel)
        return self._turns.stream(self._prepare, request, cancel)

    def _stream_images(self, request: GenerationRequest, cancel: threading.Event) -> Iterator[Chunk]:
        """A turn with images goes through the projector's chat handler (vision.py), which fills the context
        its own way: the kept cache is dropped before and after it."""
        from qwenchat.engines.llamacpp.vision import stream_with_projector

        self.reset()
        s = {**self._defaults, **request.settings}
        sampling = {
            "temperature": 0.0 if s.get("do_sample") is False else s.get("temperature", 0.8),
            "top_p": s.get("top_p", 0.95),
            "top_k": s.get("top_k", 40),
            "max_tokens": s.get("max_new_tokens"),
            "seed": request.seed,
        }
        try:
            yield from stream_with_projector(self.llm, self.projector, request, sampling, cancel)
        finally:
            self.reset()

    def score(self, request: GenerationRequest, answer: str, cancel: threading.Event) -> list[Any]:
        """`:score`: the answer's tokens teacher-forced after the prompt, from the kept cache (score.py)."""
        from qwenchat.engines.llamacpp.score import score_job

        out: list[Any] = []
        finish_scoring(self._turns.stream(lambda r: score_job(self, r, answer, out), request, cancel), cancel)
        return out

    def _sampling(self, settings: dict[str, Any]) -> dict[str, Any]:
        s = {**self._defaults, **settings}
        greedy = s.get("do_sample") is False  # the request made temperature 0 greedy
        return {
            "temp": 0.0 if greedy else float(s.get("temperature") or 1.0),
            "top_k": int(s.get("top_k") or 0),  # 0 turns top-k off, as in transformers
            "top_p": float(s.get("top_p") if s.get("top_p") is not None else 1.0),
            "min_p": float(s.get("min_p") or 0.0),
            "typical_p": float(s.get("typical_p") if s.get("typical_p") is not None else 1.0),
            "repeat_penalty": float(s.get("repetition_penalty") or 1.0),
        }

    def _prepare(self, request: GenerationRequest) -> Job:
        """This engine's part of a turn: the prompt's tokens, the sampler's settings, eval + sample."""
        prompt = self.render_prompt(request)
        ids = self._tokenize(prompt) + answer_prefix(request.prefix_ids, request.prefix_text, self._tokenize)
        sampling = self._sampling(request.settings)
        probs = self._probs(request.probs_k)
        # Probabilities are read one decode step at a time: no speculation (checked batches) with them.
        # A thinking budget forces tokens, which the draft-and-check loop does not do: no lookup then either.
        speculate = not probs and request.thinking_budget is None and request.json_schema is None
        lookup = lookup_tokens({**self._defaults, **request.settings}) if speculate else None
        if request.json_schema is not None:
            sampling["grammar"] = self._schema_grammar(request)
        n_ctx = self.context_window or 0
        think_open = prompt_opens_think(prompt)
        if not ids or len(ids) >= n_ctx:
            raise PromptError(
                f"the prompt ({len(ids)} tokens) does not fit the {n_ctx}-token context",
                prompt_tokens=len(ids),
            )
        max_new = int(request.settings.get("max_new_tokens") or self._defaults.get("max_new_tokens") or n_ctx)
        max_new = min(max_new, n_ctx - len(ids))  # the KV cache cannot hold more
        plan = self.plan(request, ids)

        def run(emit: Callable[[int], None], outcome: Outcome, cancel: threading.Event) -> None:
            if request.seed is not None:
                self.llm.set_seed(request.seed)  # as the transformers engine: the seed before every turn
            if self._prefill(plan, outcome, cancel, emit):
                budget = BudgetTracker(request.thinking_budget, think_open)
                self._sample(ids, sampling, max_new, emit, outcome, cancel, budget, probs, lookup)

        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        return Job(
            run,
            prompt_tokens=len(ids),
            think_open=think_open,
            max_new_tokens=max_new,
            stop_strings=request.settings.get("stop_strings"),
            decode=lambda token: decoder.decode(self.llm.detokenize([token])),
            flush=lambda: decoder.decode(b"", final=True),
            invalidate=self._invalidate,  # n_tokens = 0: the next turn evaluates its whole prompt
            probs=probs.records if probs else None,
        )

    def _probs(self, k: int) -> Any:
        """A recorder of token probabilities (`:probs on`), or None: then no logits are read at all."""
        if not k:
            return None
        from qwenchat.engines.llamacpp.probs import LlamaProbs

        return LlamaProbs(self.llm, self._llama_cpp, k)

    def _schema_grammar(self, request: GenerationRequest) -> Any:
        """llama.cpp's own JSON-schema grammar for this turn (`:json`); SchemaError refuses the turn."""

        from qwenchat.structured.schema import SchemaError

        if request.continue_final:  # the grammar would start over in the middle of the answer
            raise SchemaError("the llama.cpp engine cannot continue a JSON answer (:continue, :prefill)")
        try:
            text = json.dumps(request.json_schema)
            return self._llama_cpp.LlamaGrammar.from_json_schema(text, verbose=False)
        except Exception as exc:  # an unsupported keyword, a bad reference
            raise SchemaError(f"llama.cpp cannot turn the schema into a grammar: {exc}") from None

    def _prefill(self, plan: Plan, outcome: Outcome, cancel: threading.Event, emit: Callable) -> bool:
        """Keep what this prompt's schedule would compute the same way, then evaluate the rest but the last
        token in the schedule's batches (each message's segment from its own start), checking `cancel`
        between them; generate() then evaluates the last token alone. False when cancelled.

        A position's numbers depend on the batch it was evaluated in, so only the batches this prompt's
        schedule would evaluate the same way are kept (tokens sampled one at a time are evaluated again, in
        batches), and the same prompt (a retry) keeps all but its last token: then first answer, retry and
        resend are identical."""
        outcome.reused_tokens = keep = self._keep(plan)
        return self._evaluate(plan, keep, cancel, emit)

    def _keep(self, plan: Plan) -> int:
        """Drop the cached positions this prompt's schedule would not compute the same way (prefix_cache.py);
        how many stay."""
        llm = self.llm
        cached = llm.input_ids[: llm.n_tokens].tolist() if self.reuse_cache else []
        keep = self._prefix.keep(cached, plan)
        llm.n_tokens = min(llm.n_tokens, keep)  # eval() drops the cache entries from here on
        return keep

    def _evaluate(self, plan: Plan, keep: int, cancel: threading.Event, emit: Callable) -> bool:
        """Evaluate the plan's batches from `keep`, checking `cancel` between them; False when cancelled."""
        llm, ids = self.llm, plan.ids
        return self._prefix.prefill(plan, keep, lambda pos, stop: llm.eval(ids[pos:stop]), emit, cancel)

    def _sample(
        self,
        ids: list[int],
        sampling: dict[str, Any],
        max_new: int,
        emit: Callable[[int], None],
        outcome: Outcome,
        cancel: threading.Event,
        budget: BudgetTracker,
        probs: Any = None,
        lookup: int | None = None,
    ) -> None:
        """Sample one token at a time; generate() finds all but the last prompt token cached. When the
        thinking budget is spent, the closing text is appended and generate goes on from there (its prefix
        match keeps the cache)."""
        if lookup:  # speculative: drafts from the conversation, checked in one batch (llamacpp_lookup.py)
            lookup_sample(self.llm, ids, sampling, max_new, lookup, self._is_end, emit, outcome, cancel)
            return
        generated: list[int] = []
        while True:
            forced: list[int] = []
            for token in self.llm.generate(ids + generated, reset=True, **sampling):
                if self._is_end(token):
                    outcome.finish = "stop"
                    return
                if probs is not None:
                    probs.take(token)  # before emit: the turn reads the record once the token arrives
                emit(token)
                generated.append(token)
                if cancel.is_set() or len(generated) >= max_new or outcome.stop_hit:
                    return
                if budget.budget is not None and budget.step(self._piece(token)):
                    forced = self._tokenize(CLOSE_TEXT)
                    break
            if not forced:
                return
            for token in forced:
                if probs is not None:
                    probs.force(token)  # not the model's choice: no probability
                emit(token)
                generated.append(token)
                budget.step(self._piece(token))
                if len(generated) >= max_new:
                    return

    def _piece(self, token: int) -> str:
        return self.llm.detokenize([token]).decode("utf-8", errors="ignore")
