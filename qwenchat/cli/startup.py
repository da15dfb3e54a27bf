"""What a chat and a batch both start from: the system prompt and the layered generation settings."""

from __future__ import annotations

import argparse
from typing import Any

from qwenchat.conversation.model import DEFAULT_SYSTEM
from qwenchat.engines.api import Engine
from qwenchat.settings import Settings, layered_settings


def session_inputs(
    args: argparse.Namespace, prepared: dict[str, Any], engine: Engine
) -> tuple[str | None, Settings]:
    """The system prompt (None for "-") and the settings: a flag beats the config file, which beats the
    defaults. Raises a UserError for settings that do not fit the engine."""
    chat_file = prepared["file"].get("chat", {})
    system = args.system if args.system is not None else chat_file.get("system", DEFAULT_SYSTEM)
    settings = layered_settings(
        engine.default_settings(),
        prepared["file"].get("generation", {}),
        prepared["flags"],
        args.seed,
        schema=engine.settings_schema(),
    )
    return (None if system == "-" else system), settings
