"""Generation settings: `key=value` parsed by type and checked against GenerationConfig. Never eval."""

from __future__ import annotations

import ast
import difflib
import shlex
from typing import Any

from qwenchat.errors import UserError

DEFAULT_SEED = 1234  # as Qwen's cli_demo
CHAT_DEFAULTS: dict[str, Any] = {"max_new_tokens": 2048}  # the seed's chat default; the model's config wins

# The keys chat users tune, with their types and the range that makes sense. Other GenerationConfig keys
# are accepted with the type of their default value.
KNOWN: dict[str, tuple[type | tuple[type, ...], str]] = {
    "temperature": (float, "nonneg"),
    "top_p": (float, "unit"),
    "top_k": (int, "nonneg"),
    "min_p": (float, "unit0"),
    "typical_p": (float, "unit"),
    "repetition_penalty": (float, "pos"),
    "max_new_tokens": (int, "pos"),
    "min_new_tokens": (int, "nonneg"),
    "do_sample": (bool, ""),
    "no_repeat_ngram_size": (int, "nonneg"),
    "max_time": (float, "pos"),
    "stop_strings": ((str, list), ""),
    "epsilon_cutoff": (float, "unit0"),
    "eta_cutoff": (float, "unit0"),
    "length_penalty": (float, ""),
    "num_beams": (int, "pos"),
}

# Keys that would break a streamed chat turn or are internal bookkeeping.
BLOCKED = {
    "_from_model_config",
    "transformers_version",
    "return_dict_in_generate",
    "output_attentions",
    "output_hidden_states",
    "output_scores",
    "output_logits",
    "num_return_sequences",
    "use_cache",
    "cache_implementation",
    "cache_config",
    "compile_config",
    "disable_compile",
    "watermarking_config",
    "continuous_batching_config",
    "is_assistant",
    "low_memory",
    "constraints",
    "force_words_ids",
    "prefill_chunk_size",
    "max_cache_len",
    "num_beam_groups",
    "diversity_penalty",
    "penalty_alpha",
    "dola_layers",
    "guidance_scale",
    "token_healing",
    "decoder_start_token_id",
    "max_length",
    "speculation_type",
    "use_mtp",
    "assistant_early_exit",
    "assistant_confidence_threshold",
    "assistant_lookbehind",
    "target_lookbehind",
    "num_assistant_tokens",
    "num_assistant_tokens_schedule",
    "assistant_ensemble_weight",
    "prompt_lookup_num_tokens",
    "max_matching_ngram_size",
}
RANGE_TEXT = {"nonneg": ">= 0", "unit": "in (0, 1]", "unit0": "in [0, 1]", "pos": "> 0"}

_valid_keys: dict[str, Any] | None = None


class ConfigError(UserError, ValueError):
    """A rejected setting; the message is one line for the user."""


def generation_defaults() -> dict[str, Any]:
    """GenerationConfig's keys with their library defaults, minus the ones chat must not touch."""
    global _valid_keys
    if _valid_keys is None:
        from transformers import GenerationConfig

        raw = GenerationConfig().to_dict()
        _valid_keys = {k: v for k, v in raw.items() if k not in BLOCKED}
        for k in KNOWN:
            _valid_keys.setdefault(k, None)
    return _valid_keys


def parse_value(raw: str) -> Any:
    """A Python literal (numbers, True/False/None, quoted strings, lists), else the bare word as a string."""
    lowered = raw.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("none", "null"):
        return None
    try:
        return ast.literal_eval(raw)
    except (ValueError, SyntaxError, MemoryError, RecursionError, TypeError):
        return raw


def parse_assignments(text: str) -> dict[str, Any]:
    """`k=v k2="a b"` into a dict; any malformed pair rejects the whole line."""
    try:
        parts = shlex.split(text, posix=True)
    except ValueError as exc:
        raise ConfigError(f"cannot parse {text!r}: {exc}") from None
    if not parts:
        raise ConfigError("nothing to set; use key=value")
    out: dict[str, Any] = {}
    for part in parts:
        key, sep, raw = part.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"{part!r} is not key=value")
        if not raw.strip():
            raise ConfigError(f"{key}: missing value")
        out[key] = parse_value(raw)
    return out


def suggest(word: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=3, cutoff=0.5)
    return f"; did you mean {', '.join(close)}?" if close else ""


def check_value(key: str, value: Any) -> Any:
    """Type- and range-check one value; ints are accepted where floats are expected."""
    valid = generation_defaults()
    if key not in valid:
        if key in BLOCKED:
            raise ConfigError(f"{key} cannot be changed in a chat session")
        raise ConfigError(f"unknown setting {key!r}{suggest(key, sorted(valid))}")
    if key in KNOWN:
        types, rng = KNOWN[key]
    else:
        default = valid[key]
        types, rng = (type(default) if default is not None else object), ""
    if value is None:
        if key in KNOWN and key not in ("stop_strings", "max_time", "min_p", "top_k"):
            raise ConfigError(f"{key} needs a value")
        return None
    if types is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    ok = isinstance(value, types)
    if ok and isinstance(value, bool) and types is not bool and types is not object:
        ok = bool in (types if isinstance(types, tuple) else (types,))
    if not ok:
        name = " or ".join(t.__name__ for t in (types if isinstance(types, tuple) else (types,)))
        raise ConfigError(f"{key} must be {name}, got {value!r}")
    if key == "stop_strings" and isinstance(value, list) and not all(isinstance(s, str) for s in value):
        raise ConfigError("stop_strings must be a string or a list of strings")
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value != value:
        raise ConfigError(f"{key} must be a number")
    bad = (
        (rng == "nonneg" and value < 0)
        or (rng == "pos" and value <= 0)
        or (rng == "unit" and not 0 < value <= 1)
        or (rng == "unit0" and not 0 <= value <= 1)
    )
    if bad:
        raise ConfigError(f"{key} must be {RANGE_TEXT[rng]}, got {value!r}")
    return value


class Settings:
    """Model defaults + the user's overrides + the seed. Changes are all-or-nothing."""

    def __init__(self, defaults: dict[str, Any] | None = None, seed: int = DEFAULT_SEED) -> None:
        self.defaults = {**CHAT_DEFAULTS, **(defaults or {})}
        self.overrides: dict[str, Any] = {}
        self.initial_seed = seed
        self.seed = seed
        self.sources: dict[str, str] = {}  # where a default came from when not the model: "config" or "flag"

    def effective(self) -> dict[str, Any]:
        return {**self.defaults, **self.overrides}

    def changed(self) -> dict[str, Any]:
        return {k: v for k, v in self.overrides.items() if self.defaults.get(k, _MISSING) != v}

    def apply(self, text: str) -> dict[str, Any]:
        """Parse and set `k=v ...`; raise ConfigError (and change nothing) if any pair is bad."""
        return self.update(parse_assignments(text))

    def update(self, pairs: dict[str, Any]) -> dict[str, Any]:
        checked = {k: check_value(k, v) for k, v in pairs.items()}
        merged = {**self.effective(), **checked}
        validate_combination(merged)
        self.overrides.update(checked)
        return checked

    def reset(self) -> None:
        self.overrides.clear()
        self.seed = self.initial_seed

    def set_seed(self, text: str) -> int:
        try:
            value = int(text.strip(), 0)
        except ValueError:
            raise ConfigError(f"seed must be an integer, got {text.strip()!r}") from None
        if not 0 <= value < 2**32:
            raise ConfigError("seed must be between 0 and 4294967295")
        self.seed = value
        return value


_MISSING = object()


def validate_combination(merged: dict[str, Any]) -> None:
    """Let GenerationConfig reject combinations our per-key checks cannot see (e.g. min > max)."""
    import logging

    from transformers import GenerationConfig

    if merged.get("min_new_tokens") and merged.get("max_new_tokens"):
        if merged["min_new_tokens"] > merged["max_new_tokens"]:
            raise ConfigError("min_new_tokens must not exceed max_new_tokens")
    log = logging.getLogger("transformers.generation.configuration_utils")
    level = log.level
    log.setLevel(logging.ERROR)  # minor-issue warnings are noise for a chat user
    try:
        GenerationConfig(**{k: v for k, v in merged.items() if v is not None}).validate(strict=False)
    except (ValueError, TypeError) as exc:
        raise ConfigError(str(exc).splitlines()[0]) from None
    finally:
        log.setLevel(level)


# -- defaults from the config file and the command line ------------------------------------------
FLAG_KEYS = ("max_new_tokens", "temperature", "top_p", "top_k", "repetition_penalty")


def config_file_path() -> Any:
    from qwenchat.paths import config_dir

    return config_dir() / "config.toml"


def read_config_file(path: Any = None) -> dict[str, Any]:
    """The `[generation]` and `[chat]` tables of config.toml; a bad file is one ConfigError line."""
    import sys

    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib

    path = path or config_file_path()
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        return {}
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: {exc}") from None
    unknown = set(data) - {"generation", "chat"}
    if unknown:
        raise ConfigError(
            f"{path}: unknown table(s) {', '.join(sorted(unknown))}; expected [generation], [chat]"
        )
    generation = data.get("generation", {})
    if not isinstance(generation, dict):
        raise ConfigError(f"{path}: [generation] must be a table")
    try:
        checked = {k: check_value(k, v) for k, v in generation.items()}
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    return {"generation": checked, "chat": data.get("chat", {})}


def layered_settings(
    model_defaults: dict[str, Any], file_values: dict[str, Any], flag_values: dict[str, Any], seed: int
) -> Settings:
    """Precedence: command-line flag > config file > the model's generation_config."""
    settings = Settings({**model_defaults, **file_values, **flag_values}, seed=seed)
    settings.sources = {**{k: "config" for k in file_values}, **{k: "flag" for k in flag_values}}
    validate_combination(settings.effective())
    return settings
