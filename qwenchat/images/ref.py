"""What a message keeps of an image: where it was, its size, its pixels and its SHA-256 (never the bytes)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

FORMATS = ("PNG", "JPEG", "WEBP", "GIF")  # what Pillow reports for the formats taken
MIME = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp", "GIF": "image/gif"}


@dataclass(frozen=True)
class ImageRef:
    """One image of a message. `path` is absolute (a session resumed elsewhere still finds it); `name` is
    as the user typed it (what the screen shows)."""

    path: str
    sha256: str
    bytes: int
    width: int
    height: int
    format: str
    name: str = ""

    @property
    def label(self) -> str:
        return self.name or Path(self.path).name

    @property
    def mime(self) -> str:
        return MIME.get(self.format, "application/octet-stream")

    def describe(self) -> str:
        """name, size and pixels, for the attachment line and :history."""
        return f"{self.label} ({human_bytes(self.bytes)}, {self.width}x{self.height} {self.format})"

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "path": self.path,
            "sha256": self.sha256,
            "bytes": self.bytes,
            "width": self.width,
            "height": self.height,
            "format": self.format,
        }
        if self.name:
            d["name"] = self.name
        return d

    @classmethod
    def from_dict(cls, d: Any) -> ImageRef:
        """A stored image; ValueError (one line) for anything malformed."""
        if not isinstance(d, dict):
            raise ValueError("an image must be an object")
        try:
            ref = cls(
                path=_str(d["path"]),
                sha256=_str(d["sha256"]),
                bytes=_int(d["bytes"]),
                width=_int(d["width"]),
                height=_int(d["height"]),
                format=_str(d["format"]),
                name=_str(d.get("name", "")),
            )
        except KeyError as exc:
            raise ValueError(f"an image lacks {exc.args[0]!r}") from None
        if len(ref.sha256) != 64 or any(c not in "0123456789abcdef" for c in ref.sha256):
            raise ValueError("an image's sha256 is not 64 hex digits")
        return ref


def _str(v: Any) -> str:
    if not isinstance(v, str):
        raise ValueError("an image field that should be text is not")
    return v


def _int(v: Any) -> int:
    if not isinstance(v, int) or isinstance(v, bool) or v < 0:
        raise ValueError("an image field that should be a count is not")
    return v


def human_bytes(n: int) -> str:
    if n < 1024:
        return f"{n} B"
    if n < 1 << 20:
        return f"{n / 1024:.1f} KiB"
    return f"{n / (1 << 20):.1f} MiB"
