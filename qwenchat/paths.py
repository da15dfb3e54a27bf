"""Where qwenchat keeps its files; each place can be moved with an environment variable (tests, CI)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path


def _dir(env: str, kind: str, environ: Mapping[str, str] | None) -> Path:
    override = (os.environ if environ is None else environ).get(env)
    if override:
        return Path(override).expanduser()
    import platformdirs

    return Path(getattr(platformdirs, f"user_{kind}_dir")("qwenchat"))


def data_dir(environ: Mapping[str, str] | None = None) -> Path:
    """Input history and saved sessions."""
    return _dir("QWENCHAT_DATA_DIR", "data", environ)


def cache_dir(environ: Mapping[str, str] | None = None) -> Path:
    """The assembled demo model and its converted copy."""
    return _dir("QWENCHAT_CACHE_DIR", "cache", environ)


def config_dir(environ: Mapping[str, str] | None = None) -> Path:
    return _dir("QWENCHAT_CONFIG_DIR", "config", environ)
