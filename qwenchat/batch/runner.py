"""Running a batch: each run through its own headless ChatSession (the path the chat takes), one record
appended per finished run. Ctrl-C stops the running answer at the engine's next step; that unfinished run
is not written (a resume does it again), every finished one is on disk already."""

from __future__ import annotations

import copy
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Protocol

from qwenchat import __version__
from qwenchat.batch.inputs import BatchError
from qwenchat.batch.plan import Run
from qwenchat.batch.records import ResultsFile
from qwenchat.chat.session import ChatSession
from qwenchat.checks.grade import Answer, grade
from qwenchat.checks.judge import Judge
from qwenchat.checks.model_judge import ModelJudge
from qwenchat.checks.spec import Check
from qwenchat.conversation.model import Conversation, Message
from qwenchat.engines.api import Engine, SupportsAdapters, SupportsFingerprint
from qwenchat.errors import UserError, first_line
from qwenchat.images.ref import ImageRef
from qwenchat.probs.score import reference_fields
from qwenchat.settings import Settings


class BatchProgress(Protocol):
    """What a UI sees of a batch: the total, each run as it starts and ends."""

    def start(self, total: int, done: int) -> None: ...

    def running(self, run: Run) -> None: ...

    def finished(self, run: Run, record: dict[str, Any] | None) -> None: ...


class _Silent:
    def start(self, total: int, done: int) -> None:
        pass

    def running(self, run: Run) -> None:
        pass

    def finished(self, run: Run, record: dict[str, Any] | None) -> None:
        pass


@dataclass
class Summary:
    total: int = 0
    skipped: int = 0  # finished in an earlier run of the same batch
    written: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)  # (run id, error)
    interrupted: bool = False
    elapsed_s: float = 0.0

    @property
    def per_minute(self) -> float:
        return 60 * self.written / self.elapsed_s if self.elapsed_s > 0 else 0.0


@dataclass
class BatchContext:
    """What every record says about the whole batch."""

    engine: Engine
    settings: Settings  # the run's settings before per-prompt and per-variant overrides
    model: str
    engine_name: str  # transformers, llama.cpp, or openai:<url>
    adapter: str | None = None  # the adapters loaded with --adapter (for records without an adapter variant)
    overflow: str = "drop-oldest"
    json_schema: dict[str, Any] | None = None  # --json-schema: answers constrained, each record says if valid
    checks: dict[int, list[Check]] = field(default_factory=dict)  # prompt index -> its checks (shared too)
    references: dict[int, str] = field(default_factory=dict)  # prompt index -> its reference answer
    judge: Judge | None = None  # for `judge` checks


def _switch_adapter(engine: Engine, name: str) -> str | None:
    """Activate a variant's adapter as `:adapter` does: `off` the base model, `on` all loaded ones, or one by
    name; returns what is active (None: the base model). plan.check_variants refused it for other engines."""
    if not isinstance(engine, SupportsAdapters):
        raise BatchError("adapter: this engine cannot switch adapters (needs transformers and --adapter)")
    return engine.set_adapter(None if name == "off" else name)


class _Stopped(Exception):
    pass


def answer_one(ctx: BatchContext, run: Run, session_hook: Callable[[ChatSession], bool]) -> dict[str, Any]:
    """One run through a fresh headless ChatSession: its record, or a UserError.
    `session_hook` sees the session before its turn starts and says whether to start it."""
    settings = copy.deepcopy(ctx.settings)
    settings.update(run.settings)
    settings.seed = run.seed
    adapter = ctx.adapter
    if run.adapter is not None:
        adapter = _switch_adapter(ctx.engine, run.adapter)
    history = [Message(m["role"], m["content"]) for m in run.messages[:-1]]
    session = ChatSession(
        ctx.engine,
        conversation=Conversation(system=run.system, messages=history),
        settings=settings,
        overflow=ctx.overflow,
    )
    session.json_schema = ctx.json_schema
    images = [ImageRef.from_dict(d) for d in run.messages[-1].get("images", [])]
    if images:
        session.attach_images(images)  # ChatError: the engine takes no images
    sent = session.request(extra_user=run.messages[-1]["content"], extra_images=tuple(images)).messages
    sent = [{**m, "images": [r.to_dict() for r in m["images"]]} if m.get("images") else m for m in sent]
    if not session_hook(session):  # Ctrl-C came before the turn could be cancelled: do not start it
        raise _Stopped
    result = session.send(run.messages[-1]["content"])
    st = result.stats
    return {
        "key": run.key,
        "id": run.id,
        "prompt_index": run.prompt_index,
        "vars_index": run.vars_index,
        "prompt_hash": run.prompt_hash,
        "variant": run.variant,
        "variant_overrides": run.variant_overrides,
        "seed": run.seed,
        "prompt": run.messages[-1]["content"],
        "system": run.system,
        "messages": sent,
        "settings": settings.effective(),
        "adapter": adapter,
        "model": ctx.model,
        "engine": ctx.engine_name,
        "answer": result.text,
        "finish_reason": result.finish_reason,
        "error": result.error,
        "tokens": {
            "prompt": st.prompt_tokens if st else None,
            "generated": st.generated_tokens if st else None,
            "thinking": st.thinking_tokens if st else None,
        },
        "ttft_s": round(st.ttft_s, 4) if st else None,
        "tok_s": round(st.decode_tps, 2) if st else None,
        "total_s": round(st.total_s, 4) if st else None,
        **_json_fields(result.json_check),
        "fingerprint": ctx.engine.fingerprint() if isinstance(ctx.engine, SupportsFingerprint) else None,
        **reference_fields(session, run.reference),
        **({"reference": ctx.references[run.prompt_index]} if run.prompt_index in ctx.references else {}),
        "qwenchat_version": __version__,
        "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def grade_record(
    ctx: BatchContext,
    prompt_index: int,
    record: dict[str, Any],
    watch: Callable[[ChatSession], bool] | None = None,
) -> dict[str, Any]:
    """The verdicts of a record (checks, passed), before it is written: a killed run's records are
    graded. `watch` sees a judge's session (Ctrl-C reaches it)."""
    checks = ctx.checks.get(prompt_index)
    if not checks:
        return {}
    judge = ctx.judge
    if isinstance(judge, ModelJudge):  # a copy: parallel workers each grade with their own
        judge = judge.on(ctx.engine, watch)
    return grade(checks, Answer.from_record(record), judge)


def _json_fields(check: tuple[bool, str] | None) -> dict[str, Any]:
    """With --json-schema: whether the answer is valid JSON for it, and the line that says why not."""
    return {} if check is None else {"json_valid": check[0], "json_check": check[1]}


def check_resumable(runs: list[Run], results: ResultsFile) -> None:
    """A results file holds one batch: a record at a run's place (same id) for another prompt, or a
    record no run of this batch would write, means another batch wrote it; refused before anything runs."""
    by_id = {r.id: r for r in runs}
    for key, rec in results.done.items():
        run = by_id.get(rec.get("id"))
        if run is None or run.key != key:
            what = "a different prompt" if run is not None else "a run this batch does not have"
            raise BatchError(
                f"{results.path} holds {rec.get('id')} for {what}: it was written by another batch; "
                "use a new --out (or the same prompts, variants and seeds to resume)"
            )


def run_batch(
    ctx: BatchContext,
    runs: list[Run],
    results: ResultsFile,
    progress: BatchProgress | None = None,
) -> Summary:
    """Every run not in `results` yet, in order; returns what happened. Ctrl-C (SIGINT) stops the running
    answer and the batch: the summary says `interrupted`."""
    progress = progress or _Silent()
    summary = Summary(total=len(runs))
    todo = [r for r in runs if r.key not in results.done]
    summary.skipped = len(runs) - len(todo)
    stop = threading.Event()
    current: list[ChatSession] = []

    def on_sigint(signum: int, frame: Any) -> None:
        stop.set()
        for s in current:
            s.interrupt()  # the engine stops at its next step; send() returns the partial answer

    old = None
    if threading.current_thread() is threading.main_thread():
        old = signal.signal(signal.SIGINT, on_sigint)
    t0 = time.monotonic()
    progress.start(len(runs), summary.skipped)
    try:
        for run in todo:
            if stop.is_set():
                break
            progress.running(run)
            current.clear()

            def hook(session: ChatSession) -> bool:
                current.append(session)
                return not stop.is_set()

            try:
                record = answer_one(ctx, run, hook)
            except _Stopped:
                break
            except UserError as exc:
                summary.failed.append((run.id, first_line(exc)))
                progress.finished(run, None)
                continue
            if stop.is_set():  # cut short by Ctrl-C: not a finished run
                break
            if record["finish_reason"] in ("error", "interrupted"):
                summary.failed.append((run.id, record["error"] or record["finish_reason"]))
                progress.finished(run, None)
                continue
            record.update(grade_record(ctx, run.prompt_index, record, hook))
            if stop.is_set():  # Ctrl-C while a judge graded it: done again on resume
                break
            results.append(record)
            summary.written += 1
            progress.finished(run, record)
    finally:
        if old is not None:
            signal.signal(signal.SIGINT, old)
        summary.elapsed_s = time.monotonic() - t0
        summary.interrupted = stop.is_set()
    return summary
