"""Checking an answer against a JSON schema: one line that says it is valid, or its first error and where.

Used after every answer while `:json` is on, and by batch runs to record each record's validity.
"""

from __future__ import annotations

import json
import re
from typing import Any

_THINK = re.compile(r"^\s*<think>.*?</think>", re.DOTALL)


def answer_json_text(text: str) -> str:
    """The part of an answer that should be JSON: a leading <think> block is reasoning, not the answer."""
    return _THINK.sub("", text, count=1).strip()


_VALIDATORS: dict[int, tuple[Any, Any]] = {}  # id(schema) -> (schema, validator): graders check many answers


def _validator(schema: dict[str, Any] | bool) -> Any:
    import jsonschema

    hit = _VALIDATORS.get(id(schema))
    if hit is not None and hit[0] is schema:
        return hit[1]
    validator = jsonschema.validators.validator_for(schema)(schema)
    if len(_VALIDATORS) > 64:
        _VALIDATORS.clear()
    _VALIDATORS[id(schema)] = (schema, validator)  # the schema kept alive: its id cannot be reused
    return validator


def validate_answer(text: str, schema: dict[str, Any] | bool) -> tuple[bool, str]:
    """(valid, one line): `valid JSON for the schema`, or why not (a parse error with its place, or the
    first schema error with the path of the value that broke it)."""
    import jsonschema

    body = answer_json_text(text)
    if not body:
        return False, "not JSON: the answer is empty"
    try:
        value = json.loads(body)
    except json.JSONDecodeError as exc:
        return False, f"not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
    except RecursionError:
        return False, "not JSON: nested too deeply"
    validator = _validator(schema)
    error = jsonschema.exceptions.best_match(validator.iter_errors(value))
    if error is None:
        return True, "valid JSON for the schema"
    where = "$" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path)
    message = error.message if len(error.message) <= 200 else error.message[:199] + "…"
    return False, f"invalid at {where}: {message}"
