"""The settings of an image processor that a chat may change: the Qwen-VL processors' pixel budget per
image (`:conf max_pixels=401408`): fewer pixels, fewer image tokens, a faster and coarser look."""

from __future__ import annotations

from collections.abc import Callable

from qwenchat.settings import ConfigError, SettingsSchema, Spec

IMAGE_SPECS: dict[str, Spec] = {
    "min_pixels": Spec(int, "pos", nullable=True),
    "max_pixels": Spec(int, "pos", nullable=True),
}


def with_image_settings(schema: SettingsSchema, combination: Callable | None = None) -> SettingsSchema:
    """`schema` with the image settings added (a vision engine's, and what a saved session may hold)."""
    inner = combination or schema.check_combination

    def check(merged):  # the generation settings' own check never sees the image ones
        inner({k: v for k, v in merged.items() if k not in IMAGE_SPECS})
        lo, hi = merged.get("min_pixels"), merged.get("max_pixels")
        if lo is not None and hi is not None and lo > hi:
            raise ConfigError(f"min_pixels ({lo}) is above max_pixels ({hi})")

    return SettingsSchema(
        schema.owner, {**schema.specs, **IMAGE_SPECS}, blocked=schema.blocked, combination=check
    )


def image_settings(settings: dict) -> tuple[dict, dict]:
    """(the image settings, the rest) of a request's settings."""
    images = {k: v for k, v in settings.items() if k in IMAGE_SPECS}
    return images, {k: v for k, v in settings.items() if k not in IMAGE_SPECS}
