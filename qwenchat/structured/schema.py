"""JSON-schema answers: loading and checking a schema, and compiling it for constrained generation.

In-process (transformers) generation is constrained by llguidance: the schema is compiled to a grammar
and, before each sampled token, a bitmask of the tokens the grammar allows masks the logits
(engines/transformers/schema.py). llguidance was picked for its size (a 3 MB wheel with no dependencies), its
speed (the mask is computed in Rust, see bench/json_schema.py) and its plain interface (compute a mask,
consume a token), which fits generate's LogitsProcessor without touching the engine's prefill schedule.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from qwenchat.errors import UserError

MAX_SCHEMA_BYTES = 1 << 20  # a schema is a few KB; a megabyte is a wrong file

# One-line JSON with a space after ',' and ':': flexible whitespace lets a small model pad an answer with
# newlines until max_new_tokens, and the value is the same either way.
JSON_OPTIONS = {"whitespace_flexible": False, "item_separator": ", ", "key_separator": ": "}


class SchemaError(UserError):
    """A schema that cannot be used: one line, and the active schema stays as it was."""


def load_schema(path: str | Path) -> dict[str, Any]:
    """Read and check a JSON-schema file; SchemaError (one line) when it is missing, not JSON, or not a
    valid schema."""
    p = Path(path)
    try:
        if p.is_dir():
            raise SchemaError(f"{p} is a directory, not a JSON-schema file")
        if p.stat().st_size > MAX_SCHEMA_BYTES:
            raise SchemaError(f"{p} is larger than {MAX_SCHEMA_BYTES // 1024} KB: not a JSON schema")
        raw = p.read_bytes()
    except FileNotFoundError:
        raise SchemaError(f"no such file: {p}") from None
    except OSError as exc:
        raise SchemaError(f"cannot read {p}: {exc.strerror or exc}") from None
    try:
        schema = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise SchemaError(f"{p} is not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise SchemaError(f"{p} is not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except RecursionError:
        raise SchemaError(f"{p} is nested too deeply") from None
    return check_schema(schema, str(p))


def check_schema(schema: Any, where: str = "the schema") -> dict[str, Any]:
    """The schema itself, checked against its JSON-Schema metaschema; SchemaError when it is not one."""
    import jsonschema

    if not isinstance(schema, dict):
        raise SchemaError(f"{where} is not a JSON schema (a JSON object)")
    try:
        jsonschema.validators.validator_for(schema).check_schema(schema)
    except jsonschema.exceptions.SchemaError as exc:
        path = "/".join(str(x) for x in exc.absolute_path) or "top level"
        raise SchemaError(f"{where} is not a valid JSON schema ({path}): {exc.message[:200]}") from None
    return schema


_GRAMMARS: dict[str, str] = {}  # schema text → grammar, so a turn does not convert it again


def grammar(schema: dict[str, Any]) -> str:
    """The llguidance grammar for a schema; SchemaError when llguidance cannot compile it."""
    llg = _llguidance()
    key = json.dumps(schema, sort_keys=True)
    if key in _GRAMMARS:
        return _GRAMMARS[key]
    try:
        text = llg.LLMatcher.grammar_from_json_schema(schema, overrides=JSON_OPTIONS)
    except ValueError as exc:
        raise SchemaError(f"the schema cannot be used to constrain answers: {exc}") from None
    error = llg.LLMatcher.validate_grammar(text)
    if error:
        raise SchemaError(f"the schema cannot be used to constrain answers: {error.splitlines()[0][:200]}")
    if len(_GRAMMARS) > 16:
        _GRAMMARS.clear()
    _GRAMMARS[key] = text
    return text


def _llguidance() -> Any:
    try:
        import llguidance
    except ImportError:
        raise SchemaError("JSON-schema answers need llguidance: pip install llguidance") from None
    return llguidance


_TOKENIZERS: dict[int, Any] = {}  # llguidance's copy of a tokenizer takes ~1 s to build: once per tokenizer


def tokenizer_ready(tokenizer: Any) -> bool:
    return id(tokenizer) in _TOKENIZERS


def ll_tokenizer(tokenizer: Any, vocab_size: int, eos_ids: set[int]) -> Any:
    """llguidance's view of a Hugging Face fast tokenizer, built once and kept."""
    key = id(tokenizer)
    if key not in _TOKENIZERS:
        import llguidance.hf

        _TOKENIZERS.clear()  # one model at a time: a switched-out tokenizer is not kept alive
        _TOKENIZERS[key] = llguidance.hf.from_tokenizer(
            tokenizer, n_vocab=vocab_size, eos_token=sorted(eos_ids) or None
        )
    return _TOKENIZERS[key]
