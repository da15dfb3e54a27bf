"""Where qwenchat keeps its files; each place can be moved with an environment variable (tests, CI)."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Mapping
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


def private_dir(path: Path) -> Path:
    """Make `path` and every missing folder above it, each 0700 (as XDG asks for a user's data): the
    history and sessions hold what the user typed. Folders that exist already are left as they are."""
    missing = []
    for folder in (path, *path.parents):
        if folder.exists():
            break
        missing.append(folder)
    for folder in reversed(missing):
        folder.mkdir(mode=0o700, exist_ok=True)  # the umask can only take bits away from 0700
    return path


def private_file(path: Path) -> Path:
    """Create `path` empty and 0600 unless it exists (its folder private, as above); an existing file that
    others may read (from an older qwenchat) is made private too."""
    import stat

    private_dir(path.parent)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        if stat.S_IMODE(os.fstat(fd).st_mode) & 0o077:
            os.fchmod(fd, 0o600)
    finally:
        os.close(fd)
    return path


def read_capped(
    path: Path,
    name: str,
    limit: int,
    error: type[UserError],
    size: Callable[[int], str] = "{:,} bytes".format,
) -> bytes:
    """A regular file's bytes, at most `limit` of them; `error` (one line naming the file as `name`, sizes
    written by `size`) when it is missing, a folder or not a regular file, unreadable, or too large (also
    when it grew past the limit after the size was read)."""
    try:
        st = os.stat(path)
        if stat.S_ISDIR(st.st_mode):
            raise error(f"{name} is a directory")
        if not stat.S_ISREG(st.st_mode):
            raise error(f"{name} is not a regular file")
        if st.st_size > limit:
            raise error(f"{name} is too large ({size(st.st_size)}; at most {size(limit)})")
        with open(path, "rb") as f:
            raw = f.read(limit + 1)
    except FileNotFoundError:
        raise error(f"no such file: {name}") from None
    except OSError as exc:
        raise error(f"cannot read {name}: {exc.strerror or exc}") from None
    if len(raw) > limit:
        raise error(f"{name} is too large (more than {size(limit)})")
    return raw
