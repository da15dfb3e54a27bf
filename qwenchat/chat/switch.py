"""Switching models inside a chat (`:model SPEC`): load the new engine first (a failed load leaves the old
one in place), carry over the conversation, the system prompt and the settings the new engine honours
(naming those it refuses), then release the old model's memory."""

from __future__ import annotations

import ctypes
import gc
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from qwenchat.engines.api import Engine, SupportsClose
from qwenchat.errors import UserError
from qwenchat.settings import ConfigError, Settings, layered_settings

# Loads the model a spec names (the command line's -c or demo) with the chat's start-up options, reporting
# through the status renderer it gets: (engine, banner), or None after a one-line error.
SpecLoader = Callable[[str, Any], "tuple[Engine, dict[str, Any]] | None"]


class SwitchError(UserError):
    """The new model could not be loaded: the chat goes on with the old one."""


@dataclass
class Switched:
    engine: Engine
    banner: dict[str, Any]
    settings: Settings
    dropped: list[str]  # the user's settings the new engine refuses
    rss_before: int | None
    rss_after: int | None


def rss_bytes() -> int | None:
    """This process's resident memory (Linux), for the note on what switching released."""
    try:
        with open("/proc/self/statm", encoding="ascii") as f:
            pages = int(f.read().split()[1])
    except (OSError, ValueError, IndexError):
        return None
    import os

    return pages * os.sysconf("SC_PAGE_SIZE")


class Switcher:
    """What the REPL calls for `:model`: how a spec is loaded, and the start-up settings layers."""

    def __init__(self, load: SpecLoader, file_values: dict[str, Any], flags: dict[str, Any]) -> None:
        self.load_spec, self.file_values, self.flags = load, file_values, flags

    def load(self, spec: str, old_settings: Settings, status: Any) -> Switched:
        """The new engine and its settings; SwitchError (one line) when it cannot be loaded."""
        if not spec.strip():
            raise SwitchError("usage: :model SPEC (a hub id, a directory, a .gguf file, or demo)")
        before = rss_bytes()
        made = self.load_spec(spec.strip(), status)
        if made is None:
            raise SwitchError(f"could not load {spec}; still chatting with the current model")
        engine, banner = made
        try:
            settings, dropped = self.carry_settings(engine, old_settings)
        except Exception:
            release(engine)
            raise
        return Switched(engine, banner, settings, dropped, before, None)

    def carry_settings(self, engine: Engine, old: Settings) -> tuple[Settings, list[str]]:
        """The new engine's defaults under the same config file and flags, plus the user's `:conf` values
        and seed; the values it cannot honour are dropped and named."""
        schema = engine.settings_schema()
        flags, refused = schema.split(self.flags)
        try:
            settings = layered_settings(
                engine.default_settings(), self.file_values, flags, old.initial_seed, schema=schema
            )
            settings.seed = old.seed
            dropped = settings.adopt(old.overrides)
        except ConfigError as exc:
            raise SwitchError(f"the current settings do not apply to the new model: {exc}") from None
        return settings, sorted({*refused, *dropped})


def release(engine: Engine) -> None:
    """Let go of an engine's model: the engine closes what it holds (its worker thread, whose last job still
    refers to it; native memory), then collect, and hand freed memory back to the system."""
    if isinstance(engine, SupportsClose):
        engine.close()
    del engine
    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL("libc.so.6").malloc_trim(0)  # glibc keeps freed arenas otherwise
        except (OSError, AttributeError):
            pass


def switch_in_chat(session: Any, renderer: Any, switcher: Switcher, spec: str) -> None:
    """`:model SPEC` in a chat: the new model takes over the session; the old one is released. The
    session autosaves under a new id from now on, so the file of the one left behind is never rewritten."""
    old = session.engine
    switched = switcher.load(spec, session.settings, renderer)
    both = rss_bytes()
    session.engine, session.settings = switched.engine, switched.settings
    session.new_autosave_session()
    release_later, old = old, None
    release(release_later)
    del release_later
    after = rss_bytes()
    b = switched.banner
    window = switched.engine.context_window
    context = f"context {window} tokens · " if window else ""
    extra = [*b.get("extra", []), f"{context}seed {session.settings.seed}"]
    renderer.banner(model=b["model"], device=b["device"], dtype=b["dtype"], extra=extra)
    if switched.dropped:
        renderer.notice(switched.settings.schema.dropped_notice(switched.dropped, "your settings"))
    if None not in (switched.rss_before, both, after):
        gb = 1 << 30
        renderer.hint(
            f"memory: {switched.rss_before / gb:.2f} GiB before, {both / gb:.2f} GiB with both models, "
            f"{after / gb:.2f} GiB after releasing the old one"
        )
    n = session.conversation.exchanges()
    renderer.info(f"switched to {switched.engine.name}; the conversation ({n} exchanges) carries over")
