"""Check specs: what a suite says an answer must do, parsed and checked before anything runs.

A spec is a JSON/TOML object. The long form names its kind (`{"kind": "contains", "value": "Paris"}`); the
short form uses the kind as the key of its value (`{"contains": "Paris", "ignore_case": true}`). On a line
(`:check`, `:keep`, a CSV `checks` column, a `.txt` file's `@check` line) checks are `kind=value` words,
quoted as a shell quotes them (`contains="New York" finish=stop`), or one JSON object or list.
Every problem is one CheckError line naming where the check was written and which check it is.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from qwenchat.errors import UserError

KINDS = (
    "contains",
    "not_contains",
    "regex",
    "equals",
    "starts_with",
    "json_schema",
    "max_tokens",
    "finish",
    "think",
    "tool_call",
    "judge",
)
TEXT_KINDS = ("contains", "not_contains", "regex", "equals", "starts_with")
COMMON = {"kind", "name", "value"}
OPTIONS: dict[str, set[str]] = {
    "contains": {"mode", "ignore_case"},
    "not_contains": {"mode", "ignore_case"},
    "regex": {"ignore_case", "multiline"},
    "equals": {"ignore_case", "strip"},
    "starts_with": {"ignore_case"},
    "json_schema": set(),
    "max_tokens": set(),
    "finish": set(),
    "think": {"max_tokens"},
    "tool_call": {"arguments"},
    "judge": set(),
}
MAX_NAME = 60


class CheckError(UserError):
    """A check spec that cannot be used: one line naming the file, the line and the check; nothing ran."""


@dataclass(frozen=True)
class Check:
    """One parsed check: its kind, its main value and its options (all checked)."""

    kind: str
    value: Any = None
    options: dict[str, Any] = field(default_factory=dict)
    name: str = ""
    source: str = "prompt"  # "prompt": the prompt's own; "shared": from --checks FILE

    def spec(self) -> dict[str, Any]:
        """The long form, as written into records (a results file can be graded again from it)."""
        return dict(self._spec)

    @cached_property
    def _spec(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind}
        if self.value is not None:
            out["value"] = self.value
        out.update(self.options)
        out["name"] = self.name
        return out


def _short(value: Any, limit: int = 40) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def default_name(kind: str, value: Any, options: dict[str, Any]) -> str:
    if kind == "equals" and value is None:
        return "equals reference"
    if kind == "json_schema":
        return f"json_schema {value}" if isinstance(value, str) else "json_schema"
    if kind == "think":
        parts = [value] if value else []
        if options.get("max_tokens") is not None:
            parts.append(f"<={options['max_tokens']} tokens")
        return "think " + " ".join(parts)
    if kind == "contains" and options.get("mode") == "any":
        return f"contains any {_short(value)}"
    return f"{kind} {_short(value)}"


def _text_list(value: Any, what: str) -> list[str]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items or not all(isinstance(v, str) and v for v in items):
        raise CheckError(f"{what} must be non-empty text or a list of it")
    return items


def _bool(options: dict[str, Any], key: str) -> None:
    if key in options and not isinstance(options[key], bool):
        raise CheckError(f"'{key}' must be true or false")


def _count(value: Any, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise CheckError(f"{what} must be a whole number of tokens (0 or more)")
    return value


def _check_value(kind: str, value: Any, options: dict[str, Any], base: Path | None) -> Any:
    """The value checked (and normalised) for its kind; CheckError (without the place) when it is bad."""
    for key in ("ignore_case", "multiline", "strip"):
        _bool(options, key)
    if kind in ("contains", "not_contains"):
        mode = options.get("mode", "all")
        if mode not in ("all", "any"):
            raise CheckError(f"'mode' is all or any, not {_short(mode)}")
        items = _text_list(value, f"'{kind}'")
        return items[0] if len(items) == 1 else items
    if kind == "regex":
        if not isinstance(value, str) or not value:
            raise CheckError("'regex' must be a non-empty pattern")
        try:
            re.compile(value)
        except re.error as exc:
            raise CheckError(f"'regex' is not a valid pattern: {exc}") from None
        return value
    if kind == "equals":
        if value is not None and not isinstance(value, str):
            raise CheckError("'equals' must be text (or nothing: the prompt's reference)")
        return value
    if kind == "starts_with":
        if not isinstance(value, str) or not value:
            raise CheckError("'starts_with' must be non-empty text")
        return value
    if kind == "json_schema":
        from qwenchat.structured.schema import SchemaError, check_schema, load_schema

        try:
            if isinstance(value, str):  # a file, next to the file the check is in
                path = Path(value).expanduser()
                if base is not None and not path.is_absolute():
                    path = base / path
                load_schema(path)  # read now: a missing or bad file stops the run before it starts
                return str(path)
            return check_schema(value, "'json_schema'")
        except SchemaError as exc:
            raise CheckError(str(exc)) from None
    if kind == "max_tokens":
        return _count(value, "'max_tokens'")
    if kind == "finish":
        if value not in ("stop", "length"):
            raise CheckError(f"'finish' is stop or length, not {_short(value)}")
        return value
    if kind == "think":
        if isinstance(value, int) and not isinstance(value, bool):  # think=200: at most 200 tokens
            options["max_tokens"] = value
            value = None
        if value not in (None, "present", "absent"):
            raise CheckError(f"'think' is present, absent or a number of tokens, not {_short(value)}")
        if "max_tokens" in options:
            _count(options["max_tokens"], "'think' max_tokens")
        if value is None and "max_tokens" not in options:
            raise CheckError("'think' needs present, absent or max_tokens")
        return value
    if kind == "tool_call":
        if not isinstance(value, str) or not value:
            raise CheckError("'tool_call' must be a tool name")
        if "arguments" in options and not isinstance(options["arguments"], dict):
            raise CheckError("'arguments' must be an object (the arguments the call must have)")
        return value
    if kind == "judge":
        if not isinstance(value, str) or not value.strip():
            raise CheckError("'judge' must be a rubric (text saying what a good answer does)")
        return value
    raise AssertionError(kind)


def parse_check(raw: Any, *, base: Path | None = None, source: str = "prompt") -> Check:
    """One spec (long or short form) into a Check; CheckError (one line, without the place) when bad."""
    if not isinstance(raw, dict):
        raise CheckError('a check is an object such as {"contains": "Paris"}')
    spec = dict(raw)
    if "kind" in spec:
        kind = spec.pop("kind")
        if kind not in KINDS:
            raise CheckError(f"unknown check kind {_short(kind)} (kinds: {', '.join(KINDS)})")
        value = spec.pop("value", None)
    else:
        kinds = [k for k in spec if k in KINDS]
        if sorted(kinds) == ["max_tokens", "think"]:  # think's own max_tokens option
            kinds = ["think"]
        if len(kinds) != 1:
            what = "no check kind" if not kinds else "two check kinds (" + ", ".join(kinds) + ")"
            raise CheckError(f"{what} in {_short(raw, 60)} (kinds: {', '.join(KINDS)})")
        kind = kinds[0]
        value = spec.pop(kind)
        if "value" in spec:
            raise CheckError(f"'{kind}' and 'value' both give the value; give one")
    name = spec.pop("name", None)
    if name is not None and (not isinstance(name, str) or not name.strip()):
        raise CheckError("'name' must be non-empty text")
    unknown = set(spec) - OPTIONS[kind]
    if unknown:
        allowed = ", ".join(sorted(OPTIONS[kind] | {"name"}))
        raise CheckError(f"'{kind}' has no option {', '.join(sorted(unknown))} (options: {allowed})")
    value = _check_value(kind, value, spec, base)
    label = " ".join((name or default_name(kind, value, spec)).split())[:MAX_NAME]
    return Check(kind, value, spec, label, source)


def parse_checks(raw: Any, where: str, *, base: Path | None = None, source: str = "prompt") -> list[Check]:
    """A list of specs; the error names `where` and the check's place in the list."""
    if isinstance(raw, dict):
        raw = [raw]
    if not isinstance(raw, list):
        raise CheckError(f"{where}: checks must be a list of objects")
    out = []
    for i, spec in enumerate(raw, 1):
        try:
            out.append(parse_check(spec, base=base, source=source))
        except CheckError as exc:
            kind = _kind_of(spec)
            raise CheckError(f"{where}: check {i}{f' ({kind})' if kind else ''}: {exc}") from None
    return out


def _kind_of(spec: Any) -> str:
    if not isinstance(spec, dict):
        return ""
    if isinstance(spec.get("kind"), str):
        return spec["kind"]
    return next((k for k in spec if k in KINDS), "")


def _inline_value(kind: str, text: str | None) -> dict[str, Any]:
    """One `kind=value` word as a spec (the value's type as the kind wants it)."""
    if text is None:
        if kind == "equals":
            return {"equals": None}
        raise CheckError(f"'{kind}' needs a value: {kind}=…")
    if kind == "max_tokens":
        if not text.isdigit():
            raise CheckError(f"'max_tokens' must be a whole number, not {_short(text)}")
        return {"max_tokens": int(text)}
    if kind == "think":
        state, _, limit = text.partition(":")
        if state.isdigit() and not limit:
            return {"think": int(state)}
        spec: dict[str, Any] = {"think": state}
        if limit:
            if not limit.isdigit():
                raise CheckError(f"'think' limit must be a whole number, not {_short(limit)}")
            spec["max_tokens"] = int(limit)
        return spec
    if kind == "json_schema" and text.lstrip().startswith("{"):
        try:
            return {"json_schema": json.loads(text)}
        except (ValueError, RecursionError):
            raise CheckError("json_schema is not a JSON object (quote it: json_schema='{...}')") from None
    if kind == "tool_call":
        name, brace, rest = text.partition("{")
        spec = {"tool_call": name.strip()}
        if brace:
            try:
                spec["arguments"] = json.loads(brace + rest)
            except (ValueError, RecursionError):
                raise CheckError(
                    "tool_call arguments are not a JSON object: tool_call='name{\"k\": 1}'"
                ) from None
        return spec
    return {kind: text}


def inline_specs(text: str, where: str = "checks") -> list[Any]:
    """The raw specs of a line: `contains=Paris not_contains="Lyon" finish=stop`, or one JSON object or
    list of them (checked by parse_checks)."""
    text = text.strip()
    if not text:
        return []
    if text[0] in "[{":
        try:
            raw = json.loads(text)
        except (ValueError, RecursionError) as exc:
            raise CheckError(f"{where}: not JSON ({exc})") from None
        return raw if isinstance(raw, list) else [raw]
    try:
        words = shlex.split(text)
    except ValueError as exc:
        raise CheckError(f'{where}: {exc} (quote a value as a shell does: contains="New York")') from None
    specs = []
    for i, word in enumerate(words, 1):
        kind, eq, value = word.partition("=")
        if kind not in KINDS:
            raise CheckError(
                f"{where}: check {i}: unknown check kind {_short(kind)} (kinds: {', '.join(KINDS)})"
            )
        try:
            specs.append(_inline_value(kind, value if eq else None))
        except CheckError as exc:
            raise CheckError(f"{where}: check {i} ({kind}): {exc}") from None
    return specs


def parse_inline(text: str, where: str = "checks", base: Path | None = None) -> list[Check]:
    """Checks typed on a line (see inline_specs)."""
    return parse_checks(inline_specs(text, where), where, base=base)
