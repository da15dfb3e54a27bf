"""An image as a data URI, the form OpenAI-compatible servers (vLLM, SGLang) take in an image_url part."""

from __future__ import annotations

import base64

from qwenchat.images.load import image_bytes
from qwenchat.images.ref import ImageRef


def data_uri(ref: ImageRef) -> str:
    """The file's own bytes, base64 (no re-encoding: the server sees exactly the attached image)."""
    return f"data:{ref.mime};base64,{base64.b64encode(image_bytes(ref)).decode('ascii')}"
