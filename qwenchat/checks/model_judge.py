"""A judge that is a model: one greedy turn through a fresh headless ChatSession whose answer is constrained
to the verdict's JSON schema (the same path `:json` takes), on the model under test or another one."""

from __future__ import annotations

import copy
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


class ModelJudge:
    """Asks `engine` for a verdict. `watch` sees each judging session before its turn, so that Ctrl-C can
    interrupt it (the batch runner's handler); it returns False to refuse the turn."""

    def __init__(
        self,
        engine: Engine,
        name: str,
        settings: Settings | None = None,
        watch: Callable[[ChatSession], bool] | None = None,
    ) -> None:
        self.engine = engine
        self.name = name
        base = copy.deepcopy(settings) if settings is not None else None
        if base is None:
            base = Settings(engine.default_settings(), schema=engine.settings_schema())
        greedy = {"temperature": 0, "max_new_tokens": JUDGE_MAX_TOKENS}
        try:
            base.update({k: v for k, v in greedy.items() if base.schema.honours(k)})
        except UserError:  # an engine that refuses one of them judges with its own settings
            pass
        base.seed = JUDGE_SEED
        self.settings = base
        self.watch = watch

    def ask(self, system: str, prompt: str, schema: dict[str, Any]) -> str:
        session = ChatSession(
            self.engine, conversation=Conversation(system=system), settings=copy.deepcopy(self.settings)
        )
        session.json_schema = schema
        if self.watch is not None and not self.watch(session):
            raise JudgeError("interrupted")
        try:
            result = session.send(prompt)
        except UserError as exc:
            raise JudgeError(first_line(exc)) from None
        if result.finish_reason in ("error", "interrupted"):
            raise JudgeError(result.error or result.finish_reason)
        return result.text
