"""Reading image files: checked before anything is added (missing, unreadable, too large, too many pixels, not
PNG/JPEG/WebP/GIF, truncated), decoded once, and kept in memory by content hash so a turn does not read the
file again. A file that changed after it was attached is refused, never read as the old image."""

from __future__ import annotations

import hashlib
import io
import os
import threading
import warnings
from collections import OrderedDict
from pathlib import Path
from typing import Any

from qwenchat.errors import UserError
from qwenchat.images.ref import FORMATS, ImageRef, human_bytes
from qwenchat.paths import read_capped

MAX_IMAGE_BYTES = 20 << 20  # a 20 MiB file: more than any photo a chat needs
MAX_PIXELS = (
    40_000_000  # 40 megapixels; Pillow's own bomb limit (about 179 Mpx) is far above any model's input
)
_KEPT = 32  # decoded images kept in memory (by SHA-256)
SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".gif")


class ImageError(UserError):
    """An image that cannot go into a message: one line, nothing was added."""


_decoded: OrderedDict[str, Any] = OrderedDict()
_lock = threading.Lock()


def looks_like_image_path(text: str) -> bool:
    """Whether a message is nothing but the path of an image file that exists (a path pasted or dropped on
    the terminal): the chat then offers to attach it instead of sending the path as text."""
    s = text.strip().strip("'\"")
    if not s or "\n" in s or not s.lower().endswith(SUFFIXES):
        return False
    try:
        return Path(os.path.expanduser(s)).is_file()
    except (OSError, ValueError):
        return False


def read_image(path: Path, name: str) -> ImageRef:
    """Check and decode an image file; ImageError (one line) when it cannot be used."""
    raw = _read(path, name)
    image = _decode(raw, name)
    ref = ImageRef(
        path=str(Path(os.path.abspath(path))),
        sha256=hashlib.sha256(raw).hexdigest(),
        bytes=len(raw),
        width=image.width,
        height=image.height,
        format=image.format_name,
        name=name,
    )
    _keep(ref.sha256, image.rgb)
    return ref


def pixels(ref: ImageRef) -> Any:
    """The image's RGB pixels (a PIL image) for an engine: from memory, or read again from its path and
    checked against its SHA-256; ImageError when the file is gone or changed."""
    with _lock:
        image = _decoded.get(ref.sha256)
        if image is not None:
            _decoded.move_to_end(ref.sha256)
            return image
    problem = status(ref)
    if problem:
        raise ImageError(f"image {ref.label} {problem}")
    raw = _read(Path(ref.path), ref.label)
    image = _decode(raw, ref.label)
    _keep(ref.sha256, image.rgb)
    return image.rgb


def image_bytes(ref: ImageRef) -> bytes:
    """The file's bytes, checked against its SHA-256 (a server gets them as a data URI)."""
    raw = _read(Path(ref.path), ref.label)
    if hashlib.sha256(raw).hexdigest() != ref.sha256:
        raise ImageError(f"image {ref.label} changed since it was attached")
    return raw


def status(ref: ImageRef) -> str | None:
    """None when the file is still the image the message had; else what happened to it (a phrase)."""
    try:
        with open(ref.path, "rb") as f:
            digest = hashlib.file_digest(f, "sha256").hexdigest() if hasattr(hashlib, "file_digest") else None
            if digest is None:
                f.seek(0)
                digest = hashlib.sha256(f.read()).hexdigest()
    except FileNotFoundError:
        return "is gone (no such file)"
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc})"
    return None if digest == ref.sha256 else "changed since it was attached"


def _keep(sha: str, image: Any) -> None:
    with _lock:
        _decoded[sha] = image
        _decoded.move_to_end(sha)
        while len(_decoded) > _KEPT:
            _decoded.popitem(last=False)


def _read(path: Path, name: str) -> bytes:
    return read_capped(path, name, MAX_IMAGE_BYTES, ImageError, human_bytes)


class _Decoded:
    def __init__(self, rgb: Any, format_name: str) -> None:
        self.rgb = rgb
        self.format_name = format_name
        self.width, self.height = rgb.size


def _decode(raw: bytes, name: str) -> _Decoded:
    """The first frame as RGB; the pixel count is checked from the header, before anything is decoded."""
    try:
        from PIL import Image, UnidentifiedImageError
    except ImportError:
        raise ImageError("images need Pillow: pip install 'qwenchat[vision]'") from None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(raw), formats=list(FORMATS))
            fmt = im.format or ""
            w, h = im.size
            if w * h > MAX_PIXELS:
                raise ImageError(f"{name} has too many pixels ({w}x{h}; at most {MAX_PIXELS:,})")
            if w < 1 or h < 1:
                raise ImageError(f"{name} has no pixels")
            im.seek(0)  # a GIF's (or animated WebP's) first frame
            rgb = im.convert("RGB")
            rgb.load()
    except ImageError:
        raise
    except UnidentifiedImageError:
        raise ImageError(f"{name} is not a PNG, JPEG, WebP or GIF image") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageError(f"{name} has too many pixels (a decompression bomb?)") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageError(
            f"{name} is a damaged image: {str(exc).splitlines()[0] if str(exc) else 'truncated'}"
        ) from None
    return _Decoded(rgb, fmt)
