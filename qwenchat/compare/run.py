"""`:compare`: the last message of yours answered once per variant (settings, seed, system prompt, adapter),
each streamed through the session's observer, none of them changing the session's settings. Headless too.

Every variant's prompt is the same but for what the variant changes, so the engine's kept KV cache serves
the shared prefix: the first variant (or the turn before) computes it, the others reuse it (see
TransformersEngine._prepare_cache: the same prompt again keeps all but its last token). A variant with another
system prompt or adapter recomputes what differs. Each finished variant is kept at once as an alternative of
the answer in the history (`Message.alternatives`, autosaved), so a kill -9 loses none; `pick` swaps one in.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from qwenchat.compare.variants import Variant, parse_variants
from qwenchat.conversation.fields import MAX_ALTERNATIVES
from qwenchat.conversation.model import Alternative, Conversation, Message
from qwenchat.engines.api import Engine, GenerationRequest, SupportsAdapters, TurnStats
from qwenchat.errors import UserError
from qwenchat.paths import expand_user
from qwenchat.settings import ConfigError, Settings
from qwenchat.text.worddiff import DiffSummary, summarize

MAX_SYSTEM_FILE_BYTES = 1_000_000
ORIGINAL = "orig"  # the label of the answer a :pick replaced
_SAME = object()  # a variant that leaves the system prompt or the adapter as it is
ENGINE_KEYS = ("engine", "endpoint")
ENGINE_REFUSAL = (
    "a chat runs on one engine, and no second engine or endpoint can be configured yet; "
    "compare engines with two batch runs (qwenchat batch) and qwenchat diff"
)


class TurnAnswer(Protocol):
    """What a compare reads of one turn's result (`chat.observer.TurnResult` is one)."""

    text: str
    finish_reason: str
    stats: TurnStats | None
    error: str | None


class CompareHost(Protocol):
    """What a compare needs of the session it runs in (`chat.ChatSession` is one); named here, so that
    nothing below chat imports it."""

    engine: Engine
    conversation: Conversation
    settings: Settings
    interrupts: int

    def answer_request(self, request: GenerationRequest) -> TurnAnswer: ...

    def autosave(self) -> None: ...


class CompareError(UserError):
    """A compare that cannot run or a label that names no variant; nothing changed."""


@dataclass
class Prepared:
    """One variant, checked: the settings, seed, system prompt and adapter it runs with."""

    variant: Variant
    settings: Settings
    system: Any = _SAME  # str | None, or _SAME
    adapter: Any = _SAME  # "off", "on", a name, or _SAME

    def record(self, session: CompareHost) -> dict[str, Any]:
        """What the variant ran with, as stored beside its answer."""
        out: dict[str, Any] = {**self.settings.overrides, "seed": self.settings.seed}
        if self.system is not _SAME:
            out["system"] = self.system
        adapter = self.adapter if self.adapter is not _SAME else _active_adapter(session)
        if adapter is not None:
            out["adapter"] = adapter
        return out


@dataclass
class VariantResult:
    label: str
    describe: str  # `temperature=0.2 seed=1`, as typed
    text: str
    finish_reason: str
    stats: TurnStats | None = None
    error: str | None = None
    settings: dict[str, Any] = field(default_factory=dict)


@dataclass
class CompareRun:
    results: list[VariantResult]
    total: int  # variants asked for
    stopped: bool = False  # Ctrl-C: the variants after the current one did not run

    def summaries(self) -> list[DiffSummary | None]:
        """Each answer against the first one (None for the first)."""
        if not self.results:
            return []
        first = self.results[0].text
        return [None] + [summarize(first, r.text) for r in self.results[1:]]


class CompareObserver(Protocol):
    def variant_start(self, label: str, describe: str) -> None: ...

    def variant_done(self, result: VariantResult) -> None: ...


# -- checking ----------------------------------------------------------------------------------
def _active_adapter(session: CompareHost) -> str | None:
    engine = session.engine
    if not isinstance(engine, SupportsAdapters) or not engine.adapters():
        return None
    active = engine.active_adapter()
    return "off" if active is None else active


def _read_system(value: Any) -> str | None:
    if value is None or value == "-":
        return None
    if not isinstance(value, str):
        raise ConfigError(f"system must be text or @file, got {value!r:.40}")
    if not value.startswith("@"):
        return value
    path = expand_user(value[1:])
    try:
        data = path.read_bytes()[: MAX_SYSTEM_FILE_BYTES + 1]
    except OSError as exc:
        raise ConfigError(f"system: cannot read {path}: {exc.strerror or exc}") from None
    if len(data) > MAX_SYSTEM_FILE_BYTES:
        raise ConfigError(f"system: {path} is over {MAX_SYSTEM_FILE_BYTES:,} bytes")
    try:
        return data.decode("utf-8").strip("\n")
    except UnicodeDecodeError:
        raise ConfigError(f"system: {path} is not UTF-8 text") from None


def _check_adapter(session: CompareHost, value: Any) -> str:
    engine = session.engine
    names = engine.adapters() if isinstance(engine, SupportsAdapters) else []
    if not names:
        raise ConfigError(
            "adapter: no switchable LoRA adapter is loaded (the transformers engine with --adapter DIR, "
            "not merged)"
        )
    choice = "off" if value is None or value is False else "on" if value is True else str(value)
    if choice not in ("off", "on", *names):
        raise ConfigError(f"adapter: no adapter {choice!r}; loaded: {', '.join(names)} (or off, on)")
    return choice


def prepare(session: CompareHost, variants: list[Variant]) -> list[Prepared]:
    """Check every variant before any runs; ConfigError (one line, nothing run) for the first bad one."""
    out = []
    for v in variants:
        settings = copy.copy(session.settings)
        settings.overrides = dict(session.settings.overrides)  # the session's own stay untouched
        p = Prepared(v, settings)
        pairs = {}
        for key, value in v.overrides.items():
            if key in ENGINE_KEYS:
                raise ConfigError(f"{key}: {ENGINE_REFUSAL}")
            if key == "seed":
                settings.set_seed(str(value))
            elif key == "system":
                p.system = _read_system(value)
            elif key == "adapter":
                p.adapter = _check_adapter(session, value)
            else:
                pairs[key] = value
        if pairs:
            settings.update(pairs)  # the schema's checks, as :conf
        out.append(p)
    return out


# -- running -----------------------------------------------------------------------------------
def _answer_index(session: CompareHost) -> int:
    msgs = session.conversation.messages
    if not msgs or msgs[-1].role != "assistant":
        raise CompareError("there is no answer to compare yet: send a message first")
    return len(msgs) - 1


def run_compare(
    session: CompareHost,
    spec: str | list[Variant],
    observer: CompareObserver,
    *,
    grid: bool = False,
) -> CompareRun:
    """Answer the last message of yours once per variant (`spec`: `key=v1,v2 ...` or parsed variants).
    Ctrl-C stops the running variant and the compare; what finished is kept. The session's settings, seed,
    system prompt and adapter are as before afterwards."""
    idx = _answer_index(session)
    variants = parse_variants(spec, grid=grid) if isinstance(spec, str) else spec
    prepared = prepare(session, variants)
    if len(session.conversation.messages[idx].alternatives) + len(prepared) > MAX_ALTERNATIVES:
        raise CompareError(f"this answer keeps at most {MAX_ALTERNATIVES} alternatives")
    history = session.conversation.messages[:idx]
    start = session.interrupts
    run = CompareRun([], len(prepared))
    restore = _restorer(session)
    try:
        for p in prepared:
            if session.interrupts != start:
                run.stopped = True
                break
            result = _run_one(session, p, history, observer)
            run.results.append(result)
            if result.text or result.finish_reason != "error":
                _keep(session, idx, result)
            if result.finish_reason == "interrupted" or session.interrupts != start:
                run.stopped = True
                break
    except KeyboardInterrupt:  # a Ctrl-C that landed between two variants
        run.stopped = True
    finally:
        restore()
    run.stopped = run.stopped or len(run.results) < run.total
    return run


def _restorer(session: CompareHost) -> Callable[[], None]:
    engine = session.engine
    if not isinstance(engine, SupportsAdapters) or not engine.adapters():
        return lambda: None
    before = engine.active_adapter()

    def restore() -> None:
        if engine.active_adapter() != before:
            engine.set_adapter(before)

    return restore


def _run_one(
    session: CompareHost, p: Prepared, history: list[Message], observer: CompareObserver
) -> VariantResult:
    if p.adapter is not _SAME and isinstance(session.engine, SupportsAdapters):  # checked in _check_adapter
        session.engine.set_adapter(p.adapter)
    system = session.conversation.system if p.system is _SAME else p.system
    messages = [{"role": "system", "content": system}] if system is not None else []
    messages.extend({"role": m.role, "content": m.content} for m in history)
    request = GenerationRequest(messages, p.settings.effective(), p.settings.seed)
    observer.variant_start(p.variant.label, p.variant.describe())
    turn = session.answer_request(request)
    result = VariantResult(
        p.variant.label,
        p.variant.describe(),
        turn.text,
        turn.finish_reason,
        turn.stats,
        turn.error,
        p.record(session),
    )
    observer.variant_done(result)
    return result


def _keep(session: CompareHost, idx: int, result: VariantResult) -> None:
    """The variant's answer beside the one in the history, saved at once."""
    msgs = session.conversation.messages
    old = msgs[idx]
    alt = Alternative(result.text, result.label, result.settings, result.finish_reason != "stop")
    msgs[idx] = dataclasses.replace(old, alternatives=(*old.alternatives, alt))  # its token data stays
    session.autosave()


# -- after a compare ---------------------------------------------------------------------------
def find(session: CompareHost, label: str) -> Alternative:
    """The latest alternative of the last answer called `label` (case aside)."""
    msgs = session.conversation.messages
    alts = msgs[-1].alternatives if msgs and msgs[-1].role == "assistant" else ()
    if not alts:
        raise CompareError("the last answer has no compared variants; :compare key=v1,v2 runs some")
    want = label.strip().upper() if label.strip().lower() != ORIGINAL else ORIGINAL
    for alt in reversed(alts):
        if alt.label == want:
            return alt
    labels = sorted({a.label for a in alts}, key=lambda x: (len(x), x))
    raise CompareError(f"no variant {label!r}; this answer has {', '.join(labels)}")


def pick(session: CompareHost, label: str) -> Alternative:
    """Put variant `label` as the answer in the history; the answer it replaces stays an alternative."""
    alt = find(session, label)
    msgs = session.conversation.messages
    old = msgs[-1]
    alts = old.alternatives
    if not any(a.content == old.content for a in alts):
        alts = (*alts, Alternative(old.content, ORIGINAL, {}, old.interrupted))
    msgs[-1] = Message("assistant", alt.content, alt.interrupted, alternatives=alts)
    session.autosave()
    return alt
