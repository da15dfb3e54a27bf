"""Where qwenchat keeps its files; each place can be moved with an environment variable (tests, CI)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from qwenchat.errors import UserError


class PathError(UserError, ValueError):
    """A file name the user typed that names no usable path (an unknown ~user, a NUL byte)."""


def expand_user(text: str) -> Path:
    """A path the user typed, with `~` and `~user` expanded as a shell does. Where a shell would keep an
    unknown `~user` literally (and Path.expanduser raises RuntimeError), this says so in one line."""
    if "\x00" in text:
        raise PathError(f"not a valid file name: {text!r}")
    if not text.startswith("~"):
        return Path(text)
    expanded = os.path.expanduser(text)
    if expanded == text:  # no such user, or no home directory at all
        head = text.replace(os.sep, "/").split("/", 1)[0]
        who = f"user {head[1:]!r}" if len(head) > 1 else "you"
        raise PathError(f"cannot expand {text}: no home directory for {who} (./{text} names such a file)")
    return Path(expanded)


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
