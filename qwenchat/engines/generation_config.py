"""The transformers engine's settings: the whole GenerationConfig vocabulary, typed by its defaults, checked
together by GenerationConfig itself. transformers is imported on first use only, so a session file or a
config file that names a long-tail key can be checked without loading the engine. Beside the engine contract
rather than in engines/transformers/: the CLI and the session file pass it to settings.check_value as the
long tail of the settings some engine knows, before any engine is loaded."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from qwenchat.settings import COMMON, ConfigError, SettingsSchema, Spec, check_min_max

# Keys that would break a streamed chat turn or are internal bookkeeping.
BLOCKED = frozenset(
    {
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
        "max_matching_ngram_size",
    }
)

_defaults: dict[str, Any] | None = None
_schema: SettingsSchema | None = None


def generation_defaults() -> dict[str, Any]:
    """GenerationConfig's keys with their library defaults, minus the ones chat must not touch."""
    global _defaults
    if _defaults is None:
        from transformers import GenerationConfig

        raw = GenerationConfig().to_dict()
        _defaults = {k: v for k, v in raw.items() if k not in BLOCKED}
        for k in COMMON:
            _defaults.setdefault(k, None)
    return _defaults


def validate_combination(merged: Mapping[str, Any]) -> None:
    """Let GenerationConfig reject combinations our per-key checks cannot see (e.g. min > max)."""
    import logging

    from transformers import GenerationConfig

    check_min_max(merged)
    if (merged.get("num_beams") or 1) > 1:
        # generate cannot stream beam search, and the kept KV cache holds one sequence, not num_beams.
        raise ConfigError("num_beams: beam search cannot stream an answer; this engine keeps num_beams=1")
    log = logging.getLogger("transformers.generation.configuration_utils")
    level = log.level
    log.setLevel(logging.ERROR)  # minor-issue warnings are noise for a chat user
    try:
        GenerationConfig(**{k: v for k, v in merged.items() if v is not None}).validate(strict=False)
    except (ValueError, TypeError) as exc:
        raise ConfigError(str(exc).splitlines()[0]) from None
    finally:
        log.setLevel(level)


def generation_schema() -> SettingsSchema:
    """The common settings with the types and ranges chat users expect, and every other GenerationConfig
    key with the type of its default value."""
    global _schema
    if _schema is None:
        specs: dict[str, Spec] = {}
        for key, default in generation_defaults().items():
            common = COMMON.get(key)
            if common is not None:
                specs[key] = Spec(common.types, common.rng, common.nullable, default)
            else:
                specs[key] = Spec(
                    type(default) if default is not None else object, nullable=True, default=default
                )
        _schema = SettingsSchema(
            "the transformers engine", specs, blocked=BLOCKED, combination=validate_combination
        )
    return _schema
