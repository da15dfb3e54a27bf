"""Settings: an engine-neutral schema of the common generation settings, `key=value` parsing (never eval),
the schema each engine declares (what it honours), and the config file. Imports no engine, nor torch or
transformers: a key beyond the common ones is checked by the schema the caller passes in (the transformers
engine's long tail, GenerationConfig, lives in engines/generation_config.py)."""

from __future__ import annotations

import ast
import difflib
import math
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any

from qwenchat.errors import UserError

DEFAULT_SEED = 1234  # as Qwen's cli_demo
CHAT_DEFAULTS: dict[str, Any] = {"max_new_tokens": 2048}  # the seed's chat default; the model's config wins


class ConfigError(UserError, ValueError):
    """A rejected setting; the message is one line for the user."""


@dataclass(frozen=True)
class Spec:
    """One setting's type and range. `nullable`: None is a value (it turns the setting off)."""

    types: type | tuple[type, ...]
    rng: str = ""  # "nonneg", "unit" (0, 1], "unit0" [0, 1], "pos", or "" for any
    nullable: bool = False
    default: Any = None  # what `:conf all` shows when the engine's defaults say nothing
    choices: tuple[str, ...] = ()


RANGE_TEXT = {"nonneg": ">= 0", "unit": "in (0, 1]", "unit0": "in [0, 1]", "pos": "> 0"}

# The settings chat users tune, whatever the engine; an engine honours some of them.
COMMON: dict[str, Spec] = {
    "do_sample": Spec(bool),
    "temperature": Spec(float, "nonneg"),
    "top_p": Spec(float, "unit"),
    "top_k": Spec(int, "nonneg", nullable=True),
    "min_p": Spec(float, "unit0", nullable=True),
    "typical_p": Spec(float, "unit"),
    "repetition_penalty": Spec(float, "pos"),
    "max_new_tokens": Spec(int, "pos"),
    "min_new_tokens": Spec(int, "nonneg"),
    "stop_strings": Spec((str, list), nullable=True),
    "no_repeat_ngram_size": Spec(int, "nonneg"),
    "max_time": Spec(float, "pos", nullable=True),
    "epsilon_cutoff": Spec(float, "unit0"),
    "eta_cutoff": Spec(float, "unit0"),
    "length_penalty": Spec(float),
    "num_beams": Spec(int, "pos"),
    "prompt_lookup_num_tokens": Spec(int, "nonneg", nullable=True),  # drafts per step; 0/None: off
}


def suggest(word: str, choices: Collection[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=3, cutoff=0.5)
    return f"; did you mean {', '.join(close)}?" if close else ""


MAX_INT = 2**63  # past a 64-bit integer no engine or server takes a setting (and float() may overflow)


def storable_problem(value: Any, depth: int = 0) -> str | None:
    """Why a session file (JSON) or a server request could not hold `value`, else None: only null,
    booleans, strings, finite numbers and (nested) lists of them travel and come back unchanged."""
    if value is None or isinstance(value, bool | str):
        return None
    if isinstance(value, int):
        return None if -MAX_INT < value < MAX_INT else "is out of range"
    if isinstance(value, float):
        return None if math.isfinite(value) else "must be a finite number"
    if isinstance(value, list) and depth < 4:
        return next((p for p in (storable_problem(v, depth + 1) for v in value) if p), None)
    kind = "deeply nested list" if isinstance(value, list) else type(value).__name__
    return f"must be a number, string, boolean or [list], not a {kind}"


def shown(value: Any, limit: int = 40) -> str:
    """A value as an error line quotes it: its repr, cut short (a 5000-digit number is not repeated)."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 1]}…({len(text)} characters)"


def check_spec(key: str, spec: Spec, value: Any) -> Any:
    """Type- and range-check one value; ints are accepted where floats are expected. Every value is one a
    session file can store (see storable_problem)."""
    types = spec.types if isinstance(spec.types, tuple) else (spec.types,)
    if value is None:
        if not spec.nullable:
            raise ConfigError(f"{key} needs a value")
        return None
    problem = storable_problem(value)
    if problem:
        raise ConfigError(f"{key} {problem}, got {shown(value)}")
    if types == (float,) and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    # bool is an int to Python, not to a user: True is no max_new_tokens.
    ok = isinstance(value, types) and (not isinstance(value, bool) or bool in types or object in types)
    if not ok:
        raise ConfigError(f"{key} must be {' or '.join(t.__name__ for t in types)}, got {shown(value)}")
    if key == "stop_strings" and isinstance(value, list) and not all(isinstance(s, str) for s in value):
        raise ConfigError("stop_strings must be a string or a list of strings")
    if isinstance(value, int | float) and not isinstance(value, bool) and value != value:
        raise ConfigError(f"{key} must be a number")
    if spec.choices and value not in spec.choices:
        raise ConfigError(f"{key} must be one of {', '.join(spec.choices)}, got {shown(value)}")
    rng = spec.rng
    bad = (
        (rng == "nonneg" and value < 0)
        or (rng == "pos" and value <= 0)
        or (rng == "unit" and not 0 < value <= 1)
        or (rng == "unit0" and not 0 <= value <= 1)
    )
    if bad:
        raise ConfigError(f"{key} must be {RANGE_TEXT[rng]}, got {shown(value)}")
    return value


def check_min_max(merged: Mapping[str, Any]) -> None:
    """The combination every engine has: min_new_tokens cannot exceed max_new_tokens."""
    low, high = merged.get("min_new_tokens"), merged.get("max_new_tokens")
    if low and high and low > high:
        raise ConfigError("min_new_tokens must not exceed max_new_tokens")


class SettingsSchema:
    """The settings one engine honours, with their types; `refused(key)` gives a reason a setting it
    has a spec for cannot be honoured now (a server that refused a field), else None."""

    def __init__(
        self,
        owner: str,
        specs: Mapping[str, Spec],
        *,
        blocked: Collection[str] = (),
        refused: Callable[[str], str | None] | None = None,
        combination: Callable[[Mapping[str, Any]], None] = check_min_max,
    ) -> None:
        self.owner = owner  # "the llama.cpp engine": the subject of a refusal
        self.specs = dict(specs)
        self.blocked = frozenset(blocked)
        self._refused = refused or (lambda key: None)
        self._combination = combination

    def __deepcopy__(self, memo: dict[int, Any]) -> SettingsSchema:
        """Shared, never copied: a copy of some settings still asks the same engine (whose `refused` may be
        a method of an engine that holds locks and sockets, which cannot be copied)."""
        return self

    def honours(self, key: str) -> bool:
        return key in self.specs and self._refused(key) is None

    def words(self) -> list[str]:
        """What `:conf <Tab>` offers: only what this engine honours."""
        return sorted(k for k in self.specs if self.honours(k))

    def check(self, key: str, value: Any) -> Any:
        """The checked value; ConfigError (one line, with the reason) for a setting this engine refuses."""
        if key in self.specs:
            reason = self._refused(key)
            if reason:
                raise ConfigError(f"{key}: {reason}")
            return check_spec(key, self.specs[key], value)
        if key in self.blocked:
            raise ConfigError(f"{key} cannot be changed in a chat session")
        if key in COMMON:
            raise ConfigError(f"{key}: {self.owner} cannot honour it")
        raise ConfigError(f"unknown setting {key!r}{suggest(key, self.words())}")

    def check_combination(self, merged: Mapping[str, Any]) -> None:
        self._combination(merged)

    def split(self, values: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
        """(the settings this engine honours, the names of those it cannot): for a saved session or a
        config file written for another engine, which are dropped with one notice rather than refused."""
        kept = {k: v for k, v in values.items() if self.honours(k)}
        return kept, sorted(k for k in values if k not in kept)

    def dropped_notice(self, names: Collection[str], where: str = "") -> str:
        """One line that says which settings were dropped and why."""
        source = f" from {where}" if where else ""
        return f"{self.owner} cannot honour {', '.join(sorted(names))}{source}: dropped"

    def defaults(self) -> dict[str, Any]:
        return {k: self.specs[k].default for k in self.words()}


# What a settings user gets with an engine that declares no schema of its own (tests' fakes).
NEUTRAL = SettingsSchema("this engine", COMMON)
LongTail = Callable[[], SettingsSchema]  # the schema of the keys beyond COMMON, given by the caller


def check_value(key: str, value: Any, long_tail: LongTail | None = None) -> Any:
    """A setting some engine knows, with a valid value: what flags, a config file or a saved session may
    hold before the engine is known. The common settings are checked here; any other key by the schema
    `long_tail` returns (the caller's: the transformers engine's generation_schema), built only when such a
    key appears; without it, such a key is unknown."""
    if key in COMMON or long_tail is None:
        return NEUTRAL.check(key, value)
    return long_tail().check(key, value)


_OPENERS = "([{"
_CLOSERS = ")]}"


def parse_value(raw: str) -> Any:
    """A Python literal (numbers, True/False/None, quoted strings, lists), else the bare word as a string.
    A value that starts as a literal (a quote or a bracket) but is not one is refused, not taken as a word."""
    lowered = raw.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("none", "null"):
        return None
    try:
        return ast.literal_eval(raw)
    except (ValueError, SyntaxError, MemoryError, RecursionError, TypeError):
        start = raw.strip()[:1]
        if start in (*_OPENERS, "'", '"'):
            hint = " (quote the strings in a list: ['a', 'b'])" if start == "[" else ""
            raise ConfigError(f"{raw!r} is not a valid Python literal{hint}") from None
        return raw


def split_outside(text: str, is_separator: Callable[[str], bool]) -> list[str]:
    """Split `text` at separator characters outside quotes and brackets, keeping the quotes (so a value is
    read as the Python literal the user typed) and empty parts; an unclosed quote is a ConfigError."""
    parts: list[str] = []
    current: list[str] = []
    quote: str | None = None
    depth = 0
    escaped = False
    for c in text:
        if quote:  # a backslash escapes the next character, as in a Python string
            if escaped:
                escaped = False
            elif c == "\\":
                escaped = True
            elif c == quote:
                quote = None
        elif c in "'\"":
            quote = c
        elif c in _OPENERS:
            depth += 1
        elif c in _CLOSERS:
            depth = max(0, depth - 1)
        elif depth == 0 and is_separator(c):
            parts.append("".join(current))
            current = []
            continue
        current.append(c)
    if quote:
        raise ConfigError(f"cannot parse {text!r}: no closing quotation")
    parts.append("".join(current))
    return parts


def split_pairs(text: str) -> list[str]:
    """Split `k=v k2=v2` at whitespace outside quotes and brackets; unlike shlex, the quotes stay, so that
    a value is read as the Python literal the user typed (`stop_strings=['END']` keeps its quotes)."""
    return [part for part in split_outside(text, str.isspace) if part]


def parse_assignments(text: str) -> dict[str, Any]:
    """`k=v k2="a b" k3=['x', 'y']` into a dict; any malformed pair rejects the whole line."""
    parts = split_pairs(text)
    if not parts:
        raise ConfigError("nothing to set; use key=value")
    out: dict[str, Any] = {}
    for part in parts:
        key, sep, raw = part.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"{part!r} is not key=value")
        if not raw.strip():  # an empty value is not "no value": clearing has its own command
            raise ConfigError(f"{key}: missing value (:reset-conf {key} restores its default)")
        out[key] = parse_value(raw)
    return out


class Settings:
    """Model defaults + the user's overrides + the seed, within what the engine honours (its schema).
    Changes are all-or-nothing."""

    def __init__(
        self,
        defaults: dict[str, Any] | None = None,
        seed: int = DEFAULT_SEED,
        schema: SettingsSchema | None = None,
    ) -> None:
        self.schema = schema or NEUTRAL
        self.defaults = {**CHAT_DEFAULTS, **(defaults or {})}
        self.overrides: dict[str, Any] = {}
        self.initial_seed = seed
        self.seed = seed
        self.sources: dict[str, str] = {}  # where a default came from when not the model: "config" or "flag"
        self.dropped: list[str] = []  # config-file settings the engine cannot honour (layered_settings)

    def effective(self) -> dict[str, Any]:
        return {**self.defaults, **self.overrides}

    def changed(self) -> dict[str, Any]:
        return {k: v for k, v in self.overrides.items() if self.defaults.get(k, _MISSING) != v}

    def words(self) -> list[str]:
        """The setting names `:conf <Tab>` offers: the engine's."""
        return self.schema.words()

    def all_values(self) -> dict[str, Any]:
        """Every setting the engine honours with its value, for `:conf all`."""
        return {**self.schema.defaults(), **self.effective()}

    def apply(self, text: str) -> dict[str, Any]:
        """Parse and set `k=v ...`; raise ConfigError (and change nothing) if any pair is bad or is a
        setting the engine cannot honour."""
        return self.update(parse_assignments(text))

    def update(self, pairs: Mapping[str, Any]) -> dict[str, Any]:
        checked = {k: self.schema.check(k, v) for k, v in pairs.items()}
        self.schema.check_combination({**self.effective(), **checked})
        self.overrides.update(checked)
        return checked

    def adopt(self, overrides: Mapping[str, Any]) -> list[str]:
        """Replace the overrides with a saved session's; the settings the engine cannot honour are
        dropped and their names returned (for one notice). A bad value raises ConfigError and changes
        nothing."""
        kept, dropped = self.schema.split(overrides)
        checked = {k: self.schema.check(k, v) for k, v in kept.items()}
        self.schema.check_combination({**self.defaults, **checked})
        self.overrides = checked
        return dropped

    def reset(self) -> None:
        self.overrides.clear()
        self.seed = self.initial_seed

    def reset_keys(self, keys: Collection[str]) -> dict[str, Any]:
        """Drop the overrides of `keys` (`seed`: back to the starting seed), keeping the others; returns
        the values now in effect. An unknown key raises ConfigError and changes nothing."""
        known = {*self.words(), *self.overrides, "seed"}
        for key in keys:
            if key not in known:
                raise ConfigError(f"unknown setting {key!r}{suggest(key, sorted(known))}")
        overrides = {k: v for k, v in self.overrides.items() if k not in keys}
        self.schema.check_combination({**self.defaults, **overrides})
        self.overrides = overrides
        if "seed" in keys:
            self.seed = self.initial_seed
        now = {**self.effective(), "seed": self.seed}
        return {k: now.get(k) for k in keys}

    def set_seed(self, text: str) -> int:
        text = text.strip()
        try:
            value = int(text, 0) if text.isascii() and len(text) <= 20 else None  # no 5000-digit int()
        except ValueError:
            value = None
        if value is None:
            raise ConfigError(f"seed must be an integer, got {shown(text)}")
        if not 0 <= value < 2**32:
            raise ConfigError("seed must be between 0 and 4294967295")
        self.seed = value
        return value


_MISSING = object()


def layered_settings(
    model_defaults: dict[str, Any],
    file_values: dict[str, Any],
    flag_values: dict[str, Any],
    seed: int,
    schema: SettingsSchema | None = None,
) -> Settings:
    """Precedence: command-line flag > config file > the model's generation_config. A flag the engine
    cannot honour is refused; a config-file setting it cannot honour is dropped (the file serves every
    engine) and named in `Settings.dropped`."""
    schema = schema or NEUTRAL
    flags = {k: schema.check(k, v) for k, v in flag_values.items()}
    kept, dropped = schema.split(file_values)
    try:
        file = {k: schema.check(k, v) for k, v in kept.items()}
    except ConfigError as exc:
        raise ConfigError(f"config file [generation] {exc}") from None
    settings = Settings({**model_defaults, **file, **flags}, seed=seed, schema=schema)
    settings.sources = {**{k: "config" for k in file}, **{k: "flag" for k in flags}}
    settings.dropped = dropped
    schema.check_combination(settings.effective())
    return settings
