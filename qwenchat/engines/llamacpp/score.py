"""Teacher-forced scoring of a given answer (`:score`, a batch prompt's `reference`) for the llama.cpp engine.

The prompt goes through the engine's own keep/evaluate path (prefix_cache.py): it comes from the kept cache
on the same schedule as a turn's. Then the prompt's last token and the answer's tokens but its last are
evaluated one at a time, as a turn decodes them (a batch rounds differently: up to 0.08 in a token's
log-probability on the demo GGUF), and each answer token is recorded from the logits before it by the
recorder `:probs` uses (probs.py): the model's own answer scores exactly what `:probs` recorded for it.
Those positions are not kept: the Python side's token count never moves past the prompt, and their cache
entries are removed, so the next turn finds what a retry would.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Protocol

from qwenchat.engines.api import GenerationRequest, ScoreError
from qwenchat.engines.job import Job, Outcome
from qwenchat.engines.llamacpp.probs import LlamaProbs
from qwenchat.engines.prefix_cache import Plan
from qwenchat.probs.record import TokenProb


class Scorable(Protocol):
    """What a score needs of the llama.cpp engine (which imports this module)."""

    llm: Any
    _llama_cpp: Any
    prefill_chunk: int

    @property
    def context_window(self) -> int | None: ...

    def encode(self, request: GenerationRequest) -> list[int]: ...

    def plan(self, request: GenerationRequest, ids: list[int]) -> Plan: ...

    def _keep(self, plan: Plan) -> int: ...

    def _evaluate(self, plan: Plan, keep: int, cancel: threading.Event, emit: Callable) -> bool: ...

    def _invalidate(self) -> None: ...


def score_job(engine: Scorable, request: GenerationRequest, answer: str, out: list[TokenProb]) -> Job:
    """The engine's job for one score; the records go into `out`. ScoreError before anything runs when the
    answer is empty or prompt and answer do not fit the context."""
    ids = engine.encode(request)
    plan = engine.plan(request, ids)  # the prompt on a turn's schedule: from the kept cache, kept after
    answer_ids = engine.llm.tokenize(answer.encode("utf-8"), add_bos=False, special=False)
    if not answer_ids:
        raise ScoreError("the answer to score is empty")
    n_ctx = engine.context_window or 0
    if len(ids) + len(answer_ids) > n_ctx:
        raise ScoreError(
            f"prompt and answer ({len(ids)} + {len(answer_ids)} tokens) do not fit the {n_ctx}-token context"
        )
    recorder = LlamaProbs(engine.llm, engine._llama_cpp, max(request.probs_k, 1))
    recorder.records = out

    def run(emit: Callable[[Any], None], outcome: Outcome, cancel: threading.Event) -> None:
        outcome.reused_tokens = keep = engine._keep(plan)
        if not engine._evaluate(plan, keep, cancel, emit):
            return
        llm = engine.llm
        start = len(ids) - 1  # the prompt but its last token is cached now
        inputs = ids[-1:] + answer_ids[:-1]  # input i predicts answer token i
        try:
            for pos, (token_in, token) in enumerate(zip(inputs, answer_ids, strict=True), start=start):
                if cancel.is_set():
                    return
                llm._ctx.kv_cache_seq_rm(-1, pos, -1)
                llm._batch.set_batch(batch=[token_in], n_past=pos, logits_all=True)
                llm._ctx.decode(llm._batch)
                recorder.take(token, 0)
        finally:
            llm._ctx.kv_cache_seq_rm(-1, llm.n_tokens, -1)  # the answer's entries go; n_tokens never moved

    return Job(run, prompt_tokens=len(ids), invalidate=engine._invalidate)
