"""What a chat and a batch both start from: the flags and the config file checked before the slow model load
(a `Startup`), then the system prompt and the layered generation settings once the engine is there."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from qwenchat.cli.options import BatchOptions, ChatOptions, GenerationOptions, given_flags
from qwenchat.cli.testbench_flags import load_toolbox
from qwenchat.config_file import read_config_file
from qwenchat.conversation.model import DEFAULT_SYSTEM
from qwenchat.engines.api import SupportsTemplateChoice
from qwenchat.engines.generation_config import generation_schema
from qwenchat.settings import Settings, check_value, layered_settings

if TYPE_CHECKING:
    from qwenchat.conversation.file import SessionFile
    from qwenchat.conversation.store import SessionStore
    from qwenchat.engines.api import Engine
    from qwenchat.tools.turns import ToolBox


@dataclass
class Startup:
    """The checked inputs of a run, gathered before the model loads so that a bad one costs no wait."""

    flags: dict[str, Any]  # generation settings given as flags, checked (the settings' `flag` layer)
    file: dict[str, Any]  # the config file's tables ([generation], [chat])
    schema: dict[str, Any] | None = None  # --json-schema, read and parsed
    store: SessionStore | None = None  # where the chat autosaves; None: --no-autosave (and in a batch)
    saved: SessionFile | None = None  # --resume: the session to reopen
    toolbox: ToolBox | None = None  # --tools and --tool-mocks, checked

    @property
    def chat_table(self) -> dict[str, Any]:
        return self.file.get("chat", {})

    @property
    def generation_table(self) -> dict[str, Any]:
        return self.file.get("generation", {})


def read_startup(options: ChatOptions | BatchOptions, config_file: Path, data_dir: Path) -> Startup:
    """The flags, the config file, the session to resume, the tools and the schema, in that order; raises a
    UserError for a bad one (a tools file's lists every problem)."""
    flags = {k: check_value(k, v) for k, v in given_flags(options.model, options.generation).items()}
    startup = Startup(flags=flags, file=read_config_file(config_file, generation_schema))
    if isinstance(options, ChatOptions):
        if not options.no_autosave or options.resume:
            from qwenchat.conversation.store import SessionStore

            store = SessionStore(data_dir / "sessions")
            store.sweep()  # what a killed run left behind
            startup.store = None if options.no_autosave else store
            if options.resume:
                startup.saved = store.resolve(options.resume)
        startup.toolbox = load_toolbox(options)
    if options.generation.json_schema:
        from qwenchat.structured.schema import load_schema

        startup.schema = load_schema(options.generation.json_schema)
    return startup


def session_inputs(
    generation: GenerationOptions, startup: Startup, engine: Engine
) -> tuple[str | None, Settings]:
    """The system prompt (None for "-") and the settings: a flag beats the config file, which beats the
    defaults. Raises a UserError for settings that do not fit the engine."""
    given = generation.system
    # Plain completion sends the texts as they are: a default system prompt would start every one.
    plain = isinstance(engine, SupportsTemplateChoice) and engine.template_choice.plain
    system = (
        given if given is not None else startup.chat_table.get("system", None if plain else DEFAULT_SYSTEM)
    )
    settings = layered_settings(
        engine.default_settings(),
        startup.generation_table,
        startup.flags,
        generation.seed,
        schema=engine.settings_schema(),
    )
    return (None if system == "-" else system), settings
