"""Where qwenchat keeps its files; each place can be moved with an environment variable (tests, CI)."""

from __future__ import annotations

import os
from pathlib import Path


def _dir(env: str, kind: str) -> Path:
    override = os.environ.get(env)
    if override:
        return Path(override).expanduser()
    import platformdirs

    return Path(getattr(platformdirs, f"user_{kind}_dir")("qwenchat"))


def data_dir() -> Path:
    """Input history and saved sessions."""
    return _dir("QWENCHAT_DATA_DIR", "data")


def cache_dir() -> Path:
    """The assembled demo model and its converted copy."""
    return _dir("QWENCHAT_CACHE_DIR", "cache")


def config_dir() -> Path:
    return _dir("QWENCHAT_CONFIG_DIR", "config")
