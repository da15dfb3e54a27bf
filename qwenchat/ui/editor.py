"""Open text in the user's editor ($VISUAL, $EDITOR, then vi or nano) and read it back."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import tempfile

from qwenchat.errors import UserError


class EditorError(UserError):
    """No usable editor, or it failed: one line for the user."""


def find_editor() -> list[str]:
    for var in ("VISUAL", "EDITOR"):
        value = os.environ.get(var, "").strip()
        if value:
            return shlex.split(value)
    for name in ("vi", "nano"):
        if shutil.which(name):
            return [name]
    raise EditorError("no editor found: set $EDITOR (e.g. export EDITOR=nano)")


def edit_text(text: str) -> str:
    """The edited text; EditorError when the editor exits non-zero or cannot start."""
    cmd = find_editor()
    fd, path = tempfile.mkstemp(prefix="qwenchat-", suffix=".md")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        try:
            result = subprocess.run([*cmd, path], check=False)
        except OSError as exc:
            raise EditorError(f"cannot start {cmd[0]}: {exc.strerror or exc}") from None
        if result.returncode != 0:
            raise EditorError(f"{cmd[0]} exited with status {result.returncode}; nothing changed")
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    finally:
        os.unlink(path)
