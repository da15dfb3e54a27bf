"""Images for an OpenAI-compatible server: a message's images as `image_url` content parts with base64 data
URIs (the file's own bytes), then its text, the form vLLM and SGLang take for a VL model."""

from __future__ import annotations

from typing import Any

from qwenchat.images.datauri import data_uri


def content_parts(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The messages with any `images` turned into content parts; messages without images unchanged."""
    out = []
    for m in messages:
        refs = m.get("images")
        if "images" in m:
            m = {k: v for k, v in m.items() if k != "images"}
        if refs:
            parts: list[dict[str, Any]] = [
                {"type": "image_url", "image_url": {"url": data_uri(ref)}} for ref in refs
            ]
            parts.append({"type": "text", "text": m["content"]})
            m["content"] = parts
        out.append(m)
    return out
