"""Saving a chat session: the file it writes (`:save`), the autosave after every change (one writer per
session, with a fork to a new id when another process holds it) and taking over a loaded one (`:load`,
`--resume`). A part of `ChatSession`, kept apart because it is one concern of its own."""

from __future__ import annotations

import copy
import threading
from pathlib import Path
from typing import Any

from qwenchat.chat.images import settle_loaded
from qwenchat.chat.observer import ChatObserver
from qwenchat.conversation.file import SessionFile, conversation_to_dict
from qwenchat.conversation.model import Conversation
from qwenchat.conversation.store import SessionStore, save_file
from qwenchat.engines import api
from qwenchat.errors import ChatError
from qwenchat.models.identity import differences
from qwenchat.settings import ConfigError, Settings


class Saving:
    """The saving half of ChatSession (mixed into it): reads the state that ChatSession keeps."""

    conversation: Conversation
    settings: Settings
    engine: api.Engine
    store: SessionStore | None
    observer: ChatObserver
    session_id: str
    created: str
    piped: bool
    piped_run: bool
    _saved_state: Any

    @property
    def model(self) -> str:
        raise NotImplementedError

    def new_autosave_session(self) -> None:
        raise NotImplementedError

    def fields(self) -> dict[str, Any]:
        """What a session file holds, as keyword arguments of store.save_file."""
        return {
            "conversation": self.conversation,
            "model": self.model,
            "settings_overrides": dict(self.settings.overrides),
            "seed": self.settings.seed,
            "session_id": self.session_id,
            "created": self.created,
            "piped": self.piped,
            "fingerprint": self.fingerprint(),
        }

    def fingerprint_soon(self) -> None:
        """Compute the fingerprint while the user types: naming big weights by content takes a while, once
        per file, and the first autosave would wait for it."""
        threading.Thread(target=self.fingerprint, name="qwenchat-fingerprint", daemon=True).start()

    def fingerprint(self) -> dict[str, Any] | None:
        """The engine's fingerprint (models/identity.py), None when it has none or cannot say."""
        engine = self.engine
        if not isinstance(engine, api.SupportsFingerprint):
            return None
        try:
            return engine.fingerprint()
        except Exception:  # an unreadable weights file: the session is saved without it
            return None

    def save(self, path: str | Path, *, overwrite: bool = True) -> SessionFile:
        """Write the session to `path` (StoreError, one line, when it cannot; TargetExists when the file
        exists and not `overwrite`)."""
        return save_file(path, overwrite=overwrite, **self.fields())

    def autosave(self) -> None:
        """Write the session after every change, atomically; a failure is a notice, never a crash."""
        if self.store is None or not self.conversation.messages:
            return
        state = self._state()
        if state == self._saved_state:
            return
        fields = self.fields()
        fields.pop("session_id")
        try:
            self._claim()
            self.store.autosave(self.session_id, **fields)
            self._saved_state = state
        except Exception as exc:  # disk full, permissions: the chat goes on
            self.observer.notice(f"autosave failed: {exc}")

    def _state(self) -> Any:
        return (
            conversation_to_dict(self.conversation),
            dict(self.settings.overrides),
            self.settings.seed,
            self.piped,
        )

    def _claim(self) -> None:
        """Autosave writes only a session no other process has open: else this chat forks to a new id,
        so that neither process erases the other's turns."""
        if self.store is None:
            return
        holder = self.store.claim(self.session_id)
        if holder is True:
            return
        old, self.session_id = self.session_id, SessionStore.new_id()
        self.store.claim(self.session_id)
        who = f" (pid {holder})" if holder else ""
        self.observer.notice(
            f"session {old} is open in another qwenchat{who}: this chat goes on as a new session "
            f"{self.session_id}, so neither loses a turn"
        )

    def adopt(self, saved: SessionFile, *, session_id: str | None = None, created: str | None = None) -> None:
        """Take over a loaded session: conversation, settings and seed; the engine re-matches its cache.
        With `session_id` (a resumed autosave) later autosaves go on writing that session; without it (a
        loaded file) they go to a new one. Either way the session left behind keeps its file as it was."""
        settings = copy.copy(self.settings)
        settings.seed = saved.seed
        try:
            dropped = settings.adopt(saved.settings)
        except ConfigError as exc:
            raise ChatError(f"the saved settings do not apply to this model: {exc}") from None
        if dropped:
            self.observer.notice(settings.schema.dropped_notice(dropped, "the saved session"))
        self.conversation = saved.conversation
        self.settings = settings
        changes = differences(saved.fingerprint, self.fingerprint())
        if changes:
            self.observer.notice(
                "this session was saved on another setup, so its answers may differ here: "
                + "; ".join(changes)
            )
        self.new_autosave_session()
        if session_id:
            self.session_id = session_id
            self.created = created or self.created
            self._claim()  # another process has it open: this chat forks to a new id (with a notice)
            # A session any interactive run wrote to stays one `last` finds.
            self.piped = self.piped_run and saved.piped
            if self.piped == saved.piped:
                self._saved_state = self._state()  # as on disk: nothing to write until it changes
        if saved.replaced:
            n = saved.replaced
            self.observer.notice(
                f"{n} piece{'s' if n > 1 else ''} of text in the saved session {'were' if n > 1 else 'was'} "
                "not valid Unicode (a lone surrogate): replaced by \ufffd"
            )
        for notice in settle_loaded(self.conversation):  # gone or changed image files: goes on without them
            self.observer.notice(notice)
        if saved.model and saved.model != self.model:
            self.observer.notice(f"this session was saved with {saved.model}; continuing with {self.model}")
