"""Variants to compare: `key=v1,v2 key2=w1,w2` parsed into labelled sets of overrides, zipped or as a grid.

Shared by `:compare` in the chat and `--grid` in batch runs, so both read the same syntax the same way.
Values are read as `:conf` reads them (Python literals, else the bare word); checking them against a schema
is the caller's job, since which keys exist depends on the engine.
"""

from __future__ import annotations

import itertools
import string
from dataclasses import dataclass, field
from typing import Any

from qwenchat.settings import ConfigError, parse_value, split_outside, split_pairs

MAX_VARIANTS = 26  # one letter each: A..Z
LABELS = string.ascii_uppercase


@dataclass(frozen=True)
class Axis:
    """One `key=v1,v2,...`: the values as typed (for labels and `@file`) and as parsed."""

    key: str
    raw: tuple[str, ...]
    values: tuple[Any, ...]


@dataclass
class Variant:
    label: str  # "A", "B", ...
    overrides: dict[str, Any] = field(default_factory=dict)
    raw: dict[str, str] = field(default_factory=dict)  # key -> the value as typed

    def describe(self) -> str:
        """`temperature=0.2 seed=1`: how the variant differs, as the user typed it."""
        return " ".join(f"{k}={v}" for k, v in self.raw.items())


def split_values(text: str) -> list[str]:
    """Split `v1,v2` at commas outside quotes and brackets: `stop_strings=['a','b'],['c']` is two values."""
    return split_outside(text, lambda c: c == ",")


def parse_axis(part: str) -> Axis:
    key, sep, raw = part.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"{part!r} is not key=value1,value2")
    raws = [r.strip() for r in split_values(raw)]
    if any(not r for r in raws):
        raise ConfigError(f"{key}: empty value in {raw!r}")
    return Axis(key, tuple(raws), tuple(parse_value(r) for r in raws))


def parse_axes(text: str | list[str]) -> list[Axis]:
    """`temperature=0.2,1.0 seed=1,2` (a string, or already split words) into axes; a key given twice is an
    error, since which of the two was meant cannot be guessed."""
    parts = split_pairs(text) if isinstance(text, str) else list(text)
    if not parts:
        raise ConfigError("nothing to compare; use key=value1,value2")
    axes: list[Axis] = []
    for part in parts:
        axis = parse_axis(part)
        if any(a.key == axis.key for a in axes):
            raise ConfigError(f"{axis.key} is given twice")
        axes.append(axis)
    return axes


def variants(axes: list[Axis], *, grid: bool = False) -> list[Variant]:
    """Zipped (the i-th value of every axis together; an axis of one value applies to all) or, with `grid`,
    every combination. More than MAX_VARIANTS is refused."""
    if grid:
        combos = list(itertools.product(*(range(len(a.values)) for a in axes)))
    else:
        lengths = {len(a.values) for a in axes} - {1}
        if len(lengths) > 1:
            shown = ", ".join(f"{a.key} has {len(a.values)}" for a in axes)
            raise ConfigError(f"zipped variants need the same number of values ({shown}); or use --grid")
        n = max(lengths, default=1)
        combos = [tuple(0 if len(a.values) == 1 else i for a in axes) for i in range(n)]
    if len(combos) > MAX_VARIANTS:
        raise ConfigError(f"{len(combos)} variants; at most {MAX_VARIANTS} are compared at once")
    out = []
    for label, combo in zip(LABELS, combos, strict=False):
        overrides = {a.key: a.values[i] for a, i in zip(axes, combo, strict=True)}
        raw = {a.key: a.raw[i] for a, i in zip(axes, combo, strict=True)}
        out.append(Variant(label, overrides, raw))
    return out


def parse_variants(text: str | list[str], *, grid: bool = False) -> list[Variant]:
    return variants(parse_axes(text), grid=grid)
