"""The transformers engine: generate in a worker thread, decode incrementally, keep the KV cache."""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from transformers import (
    DynamicCache,
    GenerationConfig,
    LogitsProcessorList,
    StoppingCriteria,
    StoppingCriteriaList,
)
from transformers.generation.streamers import BaseStreamer

from qwenchat.engines import speculative
from qwenchat.engines.api import SAMPLING_KEYS, Chunk, GenerationRequest, finish_scoring
from qwenchat.engines.generation_config import generation_schema
from qwenchat.engines.job import Job, Outcome
from qwenchat.engines.job import error_line as turn_error_line
from qwenchat.engines.prefix_cache import MessageBounds, Plan, PrefixCache
from qwenchat.engines.transformers import compile as transformers_compile
from qwenchat.engines.transformers import probs as probs_capture
from qwenchat.engines.transformers.adapters import AdapterError, AdapterSwitch
from qwenchat.engines.transformers.budget import budget_processors
from qwenchat.engines.turn import Background, Turns
from qwenchat.models import identity, templates
from qwenchat.probs.record import answer_prefix
from qwenchat.reasoning import template_variables
from qwenchat.settings import SettingsSchema
from qwenchat.structured.schema import grammar, ll_tokenizer, tokenizer_ready
from qwenchat.text.think import prompt_opens_think

# The prefill schedule's chunk size (prefix_cache.py has the schedule and why it keeps turns reproducible).
PREFILL_CHUNK = 128


class _CancelCriteria(StoppingCriteria):
    """Stops generate at the next decode step once the user pressed Ctrl-C or the turn saw a stop string.

    Stop strings are matched by the turn in the answer's text only (turn.StopMatcher), as servers do:
    generate's own stop_strings match the end of the whole sequence, so one that spans the prompt's last
    characters and the answer's first (a "\n\n" after "assistant\n") ended answers before they began."""

    def __init__(self, cancel: threading.Event, outcome: Outcome) -> None:
        self.cancel = cancel
        self.outcome = outcome

    def __call__(
        self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs: Any
    ) -> torch.BoolTensor:
        stop = self.cancel.is_set() or self.outcome.stop_hit
        return torch.full((input_ids.shape[0],), stop, dtype=torch.bool, device=input_ids.device)


class _QueueStreamer(BaseStreamer):
    """Hands new token ids to the turn; the first put() is the prompt and is skipped."""

    def __init__(self, emit: Callable[[int], None]) -> None:
        self.emit = emit
        self.prompt_seen = False
        self.last: int | None = None  # the last generated token: end of sequence or not

    def put(self, value: torch.Tensor) -> None:
        if not self.prompt_seen:
            self.prompt_seen = True
            return
        for tok in value.reshape(-1).tolist():
            self.last = tok
            self.emit(tok)

    def end(self) -> None:
        pass  # the turn sees the end itself, after generate has returned or raised


def error_line(exc: BaseException) -> str:
    if "OutOfMemory" in type(exc).__name__:
        first = (str(exc).strip().splitlines() or [""])[0]
        return f"out of memory: {first[:200]} (try :clh or a smaller max_new_tokens)"
    return turn_error_line(exc)


class TransformersEngine(Background):
    """One model, one conversation at a time. Besides Engine it has every capability in api.py: warm,
    settle, close, template variables, detokenize, the thinking budget, adapters, schema preparation and
    the compiled decode step."""

    supports_thinking_budget = True  # :reasoning budget (the closing tag is forced in-process)

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        name: str,
        *,
        reuse_cache: bool = True,
        adapters: list[str] | None = None,
        template_choice: templates.TemplateChoice | None = None,
        weights: Path | None = None,
    ) -> None:
        self.model = model
        self.weights = weights  # where the weights came from: the fingerprint names them by content
        self._adapters = AdapterSwitch.of(model, adapters)  # None without switchable LoRA adapters
        self.tokenizer = tokenizer
        self.name = name
        self.template_choice = template_choice or templates.for_tokenizer(tokenizer, name)
        self.reuse_cache = reuse_cache
        self._cache: DynamicCache | None = None
        self._cached_ids: list[int] = []
        self._prefix = PrefixCache()  # what of the cache a new prompt keeps (prefix_cache.py)
        self.prefill_chunk = PREFILL_CHUNK  # the prefill schedule's chunk size (prefix_cache.py)
        # where answers start and end, on the ids the cache compares (vision.py marks images in them)
        self._bounds = MessageBounds(lambda r, gen: self._prompt_ids(self.render_prompt(r, gen), r))
        self._turns = Turns("qwenchat-generate", error_line=error_line)
        gc = model.generation_config
        eos = gc.eos_token_id if gc.eos_token_id is not None else tokenizer.eos_token_id
        self.eos_ids: set[int] = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        if tokenizer.eos_token_id is not None:
            self.eos_ids.add(tokenizer.eos_token_id)
        self.pad_id = gc.pad_token_id if gc.pad_token_id is not None else tokenizer.pad_token_id
        if self.pad_id is None and self.eos_ids:
            self.pad_id = min(self.eos_ids)  # set quietly, so generate does not warn every turn
        self._backend = getattr(tokenizer, "backend_tokenizer", None)
        self.draft_model: Any = None  # --draft-model: drafts checked by this model (assisted generation)
        self.static: transformers_compile.StaticDecode | None = None  # --compile: static cache, compiled step

    # -- facts about the model ---------------------------------------------------------------
    @property
    def context_window(self) -> int | None:
        return getattr(self.model.config, "max_position_embeddings", None)

    @property
    def device(self) -> torch.device:
        return self.model.device

    @functools.cached_property
    def weights_sha256(self) -> str | None:
        """The weights named by content (identity.py): read once, on the first fingerprint."""
        return identity.weights_sha256(self.weights)

    def fingerprint(self) -> dict[str, Any]:
        """What decides this engine's numbers (identity.py): weights, dtype, device, threads, libraries."""
        return {
            "engine": "transformers",
            "model": self.name,
            "weights_sha256": self.weights_sha256,
            "revision": identity.revision(self.weights),
            "adapter": self.active_adapter(),
            "dtype": str(self.model.dtype).removeprefix("torch."),
            "device": str(self.device),
            "threads": torch.get_num_threads() if self.device.type == "cpu" else None,
            **identity.runtime("torch", "transformers"),
        }

    def default_settings(self) -> dict[str, Any]:
        gc = self.model.generation_config
        out: dict[str, Any] = {}
        for key in (
            "do_sample",
            "temperature",
            "top_p",
            "top_k",
            "min_p",
            "repetition_penalty",
            "max_new_tokens",
        ):
            value = getattr(gc, key, None)
            if value is not None:
                out[key] = value
        if out.get("max_new_tokens") in (None, GenerationConfig().max_new_tokens):
            out.pop("max_new_tokens", None)
        return out

    def settings_schema(self) -> SettingsSchema:
        return generation_schema()  # the whole GenerationConfig vocabulary

    def reset(self) -> None:
        with self._turns.lock:
            self._turns.settle()
            self._forget()

    def warm(self, requests: list[GenerationRequest]) -> bool:
        """While the user types: compute the chunks every one of `requests` (the next prompt with stand-ins
        for the message not yet typed) starts with, the last answer's segment (prefix_cache.py); True when
        it began."""
        self._turns.settle()
        if not self.reuse_cache or self._cache is None:
            return False
        plans = [self.plan(r, self.encode(r)) for r in requests]
        return self._prefix.warm(self._turns, plans, self._warm_fill, self._forget)

    def _warm_fill(self, plan: Plan, cancel: threading.Event) -> None:
        with torch.inference_mode():
            self._prefill(plan, self._prepare_cache(plan), lambda _: None, cancel)

    def plan(self, request: GenerationRequest, ids: list[int]) -> Plan:
        """The chunks this prompt is computed in: its messages' segments (prefix_cache.py)."""
        return self._bounds(request, ids).plan(ids, self.prefill_chunk)

    # -- the compiled decode step (--compile, compile.py) -------------------------------------
    @property
    def compiled(self) -> bool:
        return self.static is not None

    def warm_up_compiled(self, max_new_tokens: int | None) -> None:
        if self.static is not None:
            self.static.warm_up(max_new_tokens)

    def drop_compiled(self) -> None:
        self.static = None
        self.reset()  # the kept cache is a static one

    # -- JSON answers (`:json`): llguidance's grammar and tokenizer, built ahead of the turn ------
    def check_schema(self, schema: dict[str, Any]) -> None:
        grammar(schema)

    def schema_tokenizer_ready(self) -> bool:
        return tokenizer_ready(self.tokenizer)

    def prepare_schema_tokenizer(self) -> None:
        ll_tokenizer(self.tokenizer, self.model.config.get_text_config().vocab_size, self.eos_ids)

    # -- LoRA adapters at run time (adapters.py) ---------------------------------------------
    def adapters(self) -> list[str]:
        return self._adapters.names() if self._adapters is not None else []

    def active_adapter(self) -> str | None:
        """The active adapter's name, "on" for all of them together, None for the base model."""
        return self._adapters.active if self._adapters is not None else None

    def describe_adapter(self) -> str | None:
        return self._adapters.describe() if self._adapters is not None else None

    def set_adapter(self, name: str | None) -> str | None:
        """Switch adapters ("off"/None, "on", a name); the kept cache goes: other weights, other keys."""
        if self._adapters is None:
            raise AdapterError("no switchable LoRA adapter is loaded (--adapter DIR, not merged)")
        with self._turns.lock:
            canonical = self._adapters.resolve(name)
            if canonical != self._adapters.active:
                self._adapters.set(canonical)
                self._forget()
            return canonical

    def render_prompt(self, request: GenerationRequest, generation_prompt: bool = True) -> str:
        return self.tokenizer.apply_chat_template(
            request.messages,
            chat_template=self.template_choice.source,
            tools=request.tools,
            tokenize=False,
            add_generation_prompt=generation_prompt and not request.continue_final,
            continue_final_message=request.continue_final,
            **request.template_kwargs,
        )

    def template_variables(self) -> set[str] | None:
        """What the chat template reads (reasoning.py: does it have the enable_thinking switch?)."""
        return template_variables(self.template_choice.source)

    def _tokenize(self, prompt: str) -> list[int]:
        return list(self.tokenizer(prompt, add_special_tokens=False)["input_ids"])

    def encode(self, request: GenerationRequest) -> list[int]:
        return self._prompt_ids(self.render_prompt(request), request)

    def _prompt_ids(self, prompt: str, request: GenerationRequest) -> list[int]:
        """The ids the kept cache is compared on (a vision engine marks its images in them: vision.py)."""
        return self._tokenize(prompt)

    def _model_ids(self, ids: list[int]) -> list[int]:
        """The token ids the model is given for `ids` as _prompt_ids made them."""
        return ids

    def count_tokens(self, request: GenerationRequest) -> int:
        return len(self.encode(request))

    def detokenize(self, ids: list[int]) -> str:
        """Answer tokens as text (`:branch` shows the kept part of an answer with it)."""
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    # -- generation --------------------------------------------------------------------------
    def _generation_config(self, settings: dict[str, Any]) -> GenerationConfig:
        merged = {**self.model.generation_config.to_dict(), **settings}
        if not merged.get("do_sample"):  # the model's sampling knobs too: GenerationConfig warns about them
            for key in SAMPLING_KEYS:
                merged.pop(key, None)
        if not merged.get("stop_strings"):  # [] or "" means none; generate refuses an empty list
            merged["stop_strings"] = None
        if not merged.get("prompt_lookup_num_tokens"):  # 0 means off; generate would refuse it
            merged["prompt_lookup_num_tokens"] = None
        merged["pad_token_id"] = self.pad_id
        merged["cache_implementation"] = None
        merged.pop("transformers_version", None)
        return GenerationConfig(**merged)

    def _new_cache(self) -> int:
        static = self.static
        self._cache = DynamicCache(config=self.model.config) if static is None else static.new_cache()
        self._cached_ids = []
        self._prefix.forget()
        return 0

    def _prepare_cache(self, plan: Plan) -> int:
        """Keep the part of the cache this prompt's schedule would compute the same way (prefix_cache.py);
        return its length."""
        if self.static is not None:
            self.static.want(len(plan.ids))  # a static cache grows to hold the prompt (warm work: its prefix)
        if not self.reuse_cache or self._cache is None:
            return self._new_cache()
        keep = self._prefix.keep(self._cached_ids, plan)
        drop = self._cache.get_seq_length() - keep
        try:
            if drop > 0:
                self._cache.crop(-drop)
            elif drop < 0:  # bookkeeping out of step with the cache: trust neither
                raise RuntimeError("cache shorter than its ids")
        except (RuntimeError, ValueError):  # sliding windows, static caches: start over
            return self._new_cache()
        self._cached_ids = self._cached_ids[:keep]
        if self.static is not None:
            self._cache = self.static.fit(self._cache, keep)
        return keep

    def _prefill(self, plan: Plan, start: int, emit: Callable[[Any], None], cancel: threading.Event) -> bool:
        """Compute the plan's chunks from `start` into the cache (prefix_cache.py), checking `cancel` between
        chunks; False when cancelled. What was computed stays cached."""
        ids = plan.ids

        def compute(pos: int, stop: int) -> None:
            chunk = torch.tensor([ids[pos:stop]], dtype=torch.long, device=self.device)
            self.model(
                input_ids=chunk,
                past_key_values=self._cache,
                use_cache=True,
                cache_position=torch.arange(pos, stop, device=self.device),
                logits_to_keep=1,  # the logits are not needed; the vocabulary projection is costly
            )
            self._cached_ids = ids[:stop]

        return self._prefix.prefill(plan, start, compute, emit, cancel)

    def stream(self, request: GenerationRequest, cancel: threading.Event) -> Iterator[Chunk]:
        return self._turns.stream(self._prepare, request, cancel)

    def score(self, request: GenerationRequest, answer: str, cancel: threading.Event) -> list[Any]:
        """`:score`: the answer's tokens teacher-forced after the prompt, from the kept cache (score.py)."""
        from qwenchat.engines.transformers.score import score_job

        out: list[Any] = []
        finish_scoring(self._turns.stream(lambda r: score_job(self, r, answer, out), request, cancel), cancel)
        return out

    def _forget(self) -> None:
        self._cache, self._cached_ids = None, []
        self._prefix.forget()

    def _prepare(self, request: GenerationRequest) -> Job:
        """This engine's part of a turn: the prompt's ids, a GenerationConfig, generate on the worker."""
        prompt = self.render_prompt(request)
        ids = self._prompt_ids(prompt, request)
        ids += answer_prefix(request.prefix_ids, request.prefix_text, self._tokenize)
        plan = self.plan(request, ids)
        config = self._generation_config(request.settings)
        stops, config.stop_strings = config.stop_strings, None  # matched in the answer by the turn
        cuda = self.device.type == "cuda"
        capture = probs_capture.for_request(request, self.tokenizer, config, self.eos_ids)
        think_open = prompt_opens_think(prompt)
        schema = self._schema_processors(request)
        if self.static is not None:  # --compile: a cache with room for the answer; the compiled step or not
            self.static.prepare(request.settings, config, len(ids), eager=capture is not None)

        def run(emit: Callable[[int], None], outcome: Outcome, cancel: threading.Event) -> None:
            outcome.reused_tokens = self._prepare_cache(plan)
            if cuda:
                torch.cuda.reset_peak_memory_stats(self.device)
            with torch.inference_mode():
                if not self._prefill(plan, outcome.reused_tokens, emit, cancel):
                    return
            if request.seed is not None:
                torch.manual_seed(request.seed)  # as the seed's set_seed before every turn
            input_ids = torch.tensor([self._model_ids(ids)], dtype=torch.long, device=self.device)
            streamer = _QueueStreamer(capture.wrap(emit) if capture else emit)
            # Probabilities are read one decode step at a time: no speculation (checked batches) then.
            # A budget or a schema steers each step: assisted decoding does not run them the same way.
            plain = capture is None and request.thinking_budget is None and schema is None
            lookup = speculative.lookup_tokens(request.settings) if plain else None
            draft = self.draft_model if plain else None
            drafts = speculative.DraftStats(limit=lookup or 0) if lookup or draft is not None else None
            extra = {"assistant_model": draft} if draft is not None and not lookup else {}
            budget = budget_processors(
                request.thinking_budget,
                think_open,
                len(ids),
                tokenize=self._tokenize,
                new_decoder=self._new_decoder,
            )
            try:
                with (
                    torch.inference_mode(),
                    probs_capture.attached(capture, self.model) as processors,
                    speculative.counting(self.model, drafts),
                ):
                    self.model.generate(
                        input_ids=input_ids,
                        attention_mask=torch.ones_like(input_ids),
                        generation_config=config,
                        past_key_values=self._cache,
                        streamer=streamer,
                        stopping_criteria=StoppingCriteriaList([_CancelCriteria(cancel, outcome)]),
                        # the schema masks, the budget forces; the capture, last, sees what was sampled from
                        logits_processor=LogitsProcessorList(
                            [
                                *(schema or []),
                                *budget,
                                *(processors or []),
                            ]
                        ),
                        **extra,
                    )
            finally:
                if drafts is not None:
                    outcome.drafted_tokens, outcome.accepted_tokens = drafts.drafted, drafts.accepted
                if cuda:
                    outcome.peak_gpu_mem_bytes = torch.cuda.max_memory_allocated(self.device)
            if streamer.last in self.eos_ids:
                outcome.finish = "stop"

        def commit(generated: list[int]) -> None:
            # The cache holds every token but the last sampled one (or the chunks computed before a Ctrl-C).
            if generated:
                self._cached_ids = ids + generated[:-1]
            held = self._cache.get_seq_length() if self._cache is not None else 0
            if held > len(self._cached_ids):  # generate began on the last token, then Ctrl-C
                self._cache.crop(len(self._cached_ids) - held)  # negative: tokens to drop
            elif held < len(self._cached_ids):
                self._forget()

        return Job(
            run,
            prompt_tokens=len(ids),
            think_open=think_open,
            max_new_tokens=config.max_new_tokens,
            # the turn stops generate at a stop string (_CancelCriteria) and keeps it out of the answer.
            stop_strings=stops,
            decode=self._new_decoder(),
            invalidate=self._forget,
            commit=commit,
            probs=capture.records if capture else None,
        )

    def _schema_processors(self, request: GenerationRequest) -> list[Any] | None:
        """The JSON-schema constraint of this turn (`:json`), or None; SchemaError refuses the turn."""
        if request.json_schema is None:
            return None
        from transformers import LogitsProcessorList

        from qwenchat.engines.transformers.schema import schema_processor

        start = request.messages[-1]["content"] if request.continue_final else ""
        vocab = self.model.config.get_text_config().vocab_size
        prefix = self._tokenize(start) if start else []
        return LogitsProcessorList(
            [schema_processor(request.json_schema, self.tokenizer, vocab, self.eos_ids, prefix)]
        )

    def _new_decoder(self):
        """Constant work per token: tokenizers' DecodeStream when there is a fast backend."""
        if self._backend is not None:
            from tokenizers.decoders import DecodeStream

            stream = DecodeStream(skip_special_tokens=True)
            backend = self._backend

            def step(tok: int) -> str:
                return stream.step(backend, tok) or ""

            return step
        # Slow tokenizers: decode a window of recent tokens and emit the new suffix.
        ids: list[int] = []
        emitted = [0]

        def step_slow(tok: int) -> str:
            ids.append(tok)
            text = self.tokenizer.decode(ids, skip_special_tokens=True)
            if text.endswith("\ufffd"):
                return ""
            new = text[emitted[0] :]
            emitted[0] = len(text)
            return new

        return step_slow
