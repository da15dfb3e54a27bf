"""Files in messages (`:read PATH...`, `--read PATH`): each file's text, fenced with its name, goes before
the next message. A file that is missing, unreadable, binary or too large is refused with one line."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qwenchat.errors import UserError
from qwenchat.paths import read_capped
from qwenchat.text.fences import fenced

MAX_FILE_BYTES = 1 << 20  # a megabyte of text is ~250k tokens: more than any context window here
_LANGS = {".py": "python", ".js": "javascript", ".ts": "typescript", ".rs": "rust", ".go": "go",
          ".c": "c", ".h": "c", ".cpp": "cpp", ".java": "java", ".sh": "bash", ".json": "json",
          ".toml": "toml", ".yaml": "yaml", ".yml": "yaml", ".md": "markdown", ".html": "html",
          ".css": "css", ".sql": "sql", ".rb": "ruby", ".txt": "text"}  # fmt: skip


class AttachError(UserError):
    """A file that cannot go into a message: one line, and nothing was added."""


@dataclass(frozen=True)
class Attachment:
    name: str  # as the user typed it
    text: str

    def block(self) -> str:
        """The file as the model sees it: its name, then its text in a fence no line of it can close."""
        info = _LANGS.get(Path(self.name).suffix.lower(), "")
        name = self.name.replace("\n", " ").replace("\r", " ")
        return f"File `{name}`:\n\n{fenced(self.text, info)}"


def read_file(path: Path, name: str) -> Attachment:
    """A text file's content; AttachError when it is missing, not a regular file, unreadable, too large,
    or binary (a NUL byte, or not UTF-8)."""
    raw = read_capped(path, name, MAX_FILE_BYTES, AttachError)
    if b"\0" in raw:
        raise AttachError(f"{name} is a binary file, not text")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise AttachError(f"{name} is not UTF-8 text (a binary file?)") from None
    return Attachment(name, text.replace("\r\n", "\n"))


def compose(attachments: list[Attachment], message: str) -> str:
    """The message the model gets: the files first, then what the user wrote."""
    blocks = [a.block() for a in attachments]
    return "\n\n".join([*blocks, message]) if message.strip() else "\n\n".join(blocks)


def fit(session: Any, files: list[Attachment]) -> str:
    """Check that the files (with those already pending) and the conversation of `session` (a ChatSession)
    leave room for an answer in the context window; AttachError when they do not. Returns the token
    counts, as one phrase."""
    text = compose([*session.attachments, *files], "")
    engine = session.engine
    try:
        with_files = engine.count_tokens(session.request(extra_user=text))
        without = engine.count_tokens(session.request(extra_user=""))
    except NotImplementedError:  # a server applies the template and counts
        return f"about {len(text) // 4:,} tokens (estimated: the server counts them)"
    added = with_files - without
    window = engine.context_window
    budget = session.settings.effective().get("max_new_tokens") or 0
    if window and with_files + budget > window:
        raise AttachError(
            f"the files take {added:,} tokens: with the conversation ({with_files:,}) and max_new_tokens "
            f"({budget:,}) that exceeds the {window:,}-token context; nothing was added"
        )
    of = f" of {window:,}" if window else ""
    return f"{added:,} tokens (the prompt with them: {with_files:,}{of})"
