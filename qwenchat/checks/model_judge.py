"""A judge that is a model: one greedy turn through a fresh headless ChatSession whose answer is constrained
to the verdict's JSON schema (the same path `:json` takes), on the model under test or another one."""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable
from typing import Any

from qwenchat.chat.session import ChatSession
from qwenchat.checks.judge import JudgeError
from qwenchat.conversation.model import Conversation
from qwenchat.engines.api import Engine
from qwenchat.errors import UserError, first_line
from qwenchat.settings import Settings

JUDGE_MAX_TOKENS = 120  # the verdict: a reason of at most 200 characters and a boolean
JUDGE_SEED = 0


Watch = Callable[[ChatSession], bool]


class ModelJudge:
    """Asks `engine` for a verdict. `watch` sees each judging session before its turn, so that Ctrl-C can
    interrupt it (the batch runner's handler); it returns False to refuse the turn. An engine runs one turn
    at a time: concurrent askers (batch --parallel) take turns. `under_test`: the judge is the model that
    answered (a parallel batch then judges on each worker's own connection, see `on`)."""

    def __init__(
        self,
        engine: Engine,
        name: str,
        settings: Settings | None = None,
        watch: Watch | None = None,
        *,
        under_test: bool = False,
    ) -> None:
        self.engine = engine
        self.name = name
        self.under_test = under_test
        self._lock = threading.Lock()
        schema = settings.schema if settings is not None else engine.settings_schema()
        values = settings.effective() if settings is not None else engine.default_settings()
        base = Settings(dict(values), seed=JUDGE_SEED, schema=schema)
        greedy = {"temperature": 0, "max_new_tokens": JUDGE_MAX_TOKENS}
        try:
            base.update({k: v for k, v in greedy.items() if schema.honours(k)})
        except UserError:  # an engine that refuses one of them judges with its own settings
            pass
        self.values, self.schema = base.effective(), schema
        self.watch = watch

    def _settings(self) -> Settings:
        """Fresh settings for each verdict (a schema may hold the engine: it is shared, never copied)."""
        return Settings(dict(self.values), seed=JUDGE_SEED, schema=self.schema)

    def on(self, engine: Engine, watch: Watch | None) -> ModelJudge:
        """This judge for one batch worker: its own connection when the judge is the model under test (the
        worker's engine is free while it grades), and that worker's Ctrl-C watch."""
        judge = copy.copy(self)
        if self.under_test and engine is not self.engine:
            judge.engine, judge._lock = engine, threading.Lock()
        judge.watch = watch
        return judge

    def ask(self, system: str, prompt: str, schema: dict[str, Any]) -> str:
        session = ChatSession(
            self.engine, conversation=Conversation(system=system), settings=self._settings()
        )
        session.json_schema = schema
        with self._lock:
            if self.watch is not None and not self.watch(session):
                raise JudgeError("interrupted")
            try:
                result = session.send(prompt)
            except UserError as exc:
                raise JudgeError(first_line(exc)) from None
        if result.finish_reason in ("error", "interrupted"):
            raise JudgeError(result.error or result.finish_reason)
        return result.text
