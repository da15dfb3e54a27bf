"""Grading one answer: each check gives a verdict {"name", "kind", "pass", "detail", "source", "check"}
(a judge's verdict also keeps the judge's prompt and answer). Text checks read the answer without its
think block; `think` reads the block; `tool_call` reads the calls the answer made."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from qwenchat.checks.judge import Judge, judge_verdict
from qwenchat.checks.spec import Check
from qwenchat.text.think import split_think

EXCERPT = 60


@dataclass
class Answer:
    """What the checks look at: the answer's text (think tags included), how it ended, its token counts,
    its tool calls, and what was asked (for the judge)."""

    text: str
    finish_reason: str | None = None
    generated_tokens: int | None = None
    thinking_tokens: int | None = None
    tool_calls: list[dict[str, Any]] | None = None  # None: read them from the text
    prompt: str = ""
    system: str | None = None
    reference: str | None = None
    _split: tuple[str | None, str] | None = field(default=None, repr=False)

    @classmethod
    def from_record(cls, record: dict[str, Any], reference: str | None = None) -> Answer:
        tokens = record.get("tokens") if isinstance(record.get("tokens"), dict) else {}
        calls = record.get("tool_calls")
        return cls(
            text=str(record.get("answer") or ""),
            finish_reason=record.get("finish_reason"),
            generated_tokens=_int(tokens.get("generated")),
            thinking_tokens=_int(tokens.get("thinking")),
            tool_calls=calls if isinstance(calls, list) else None,
            prompt=str(record.get("prompt") or ""),
            system=record.get("system") if isinstance(record.get("system"), str) else None,
            reference=reference if reference is not None else _str(record.get("reference")),
        )

    @property
    def think(self) -> str | None:
        return self._parts()[0]

    @property
    def visible(self) -> str:
        """The answer without its think block."""
        return self._parts()[1]

    def _parts(self) -> tuple[str | None, str]:
        if self._split is None:
            self._split = split_think(self.text) if "think>" in self.text else (None, self.text)
        return self._split

    def calls(self) -> list[dict[str, Any]]:
        if self.tool_calls is not None:
            return [c for c in self.tool_calls if isinstance(c, dict)]
        if "<tool_call>" not in self.text:
            return []
        from qwenchat.tools.calls import split_calls

        _, found = split_calls(self.text)
        return [{"name": c.name, "arguments": c.arguments} for c in found if c.valid]


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def excerpt(text: str, at: int = 0, width: int = EXCERPT) -> str:
    """A short piece of `text` around `at`, on one line (the renderer makes it safe to show)."""
    start = max(0, at - width // 3)
    piece = " ".join(text[start : start + width].split())
    return ("…" if start > 0 else "") + piece + ("…" if start + width < len(text) else "")


def _fold(text: str, ignore_case: bool) -> str:
    return text.casefold() if ignore_case else text


def _contains(check: Check, answer: Answer) -> tuple[bool, str]:
    ic = bool(check.options.get("ignore_case"))
    items = [check.value] if isinstance(check.value, str) else list(check.value)
    text = _fold(answer.visible, ic)
    found = [t for t in items if _fold(t, ic) in text]
    missing = [t for t in items if t not in found]
    any_mode = check.options.get("mode") == "any"
    if check.kind == "contains":
        ok = bool(found) if any_mode else not missing
        if ok:
            return True, "found " + ", ".join(repr(t) for t in found)
        return False, "missing " + ", ".join(repr(t) for t in missing) + f" in: {excerpt(answer.visible)}"
    ok = bool(missing) if any_mode else not found
    if ok:
        return True, "absent: " + ", ".join(repr(t) for t in missing)
    first = found[0]
    at = text.find(_fold(first, ic))
    return False, "found " + ", ".join(repr(t) for t in found) + f": {excerpt(answer.visible, at)}"


@lru_cache(maxsize=256)
def _pattern(pattern: str, flags: int) -> re.Pattern[str]:
    return re.compile(pattern, flags)


def _regex(check: Check, answer: Answer) -> tuple[bool, str]:
    flags = (re.IGNORECASE if check.options.get("ignore_case") else 0) | (
        re.MULTILINE if check.options.get("multiline") else 0
    )
    m = _pattern(check.value, flags).search(answer.visible)
    if m:
        return True, f"matched {m.group(0)[:EXCERPT]!r}"
    return False, f"no match in: {excerpt(answer.visible)}"


def _equals(check: Check, answer: Answer) -> tuple[bool, str]:
    want = check.value if check.value is not None else answer.reference
    if want is None:
        return False, "no reference answer to compare with"
    got = answer.visible if check.value is not None else answer.text
    if check.options.get("strip", True):
        got, want = got.strip(), want.strip()
    ic = bool(check.options.get("ignore_case"))
    if _fold(got, ic) == _fold(want, ic):
        return True, "equal"
    a, b = _fold(got, ic), _fold(want, ic)
    at = next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))
    return False, f"differs at character {at + 1}: {excerpt(got, at)}"


def _starts_with(check: Check, answer: Answer) -> tuple[bool, str]:
    ic = bool(check.options.get("ignore_case"))
    text = answer.visible.lstrip()
    if _fold(text, ic).startswith(_fold(check.value, ic)):
        return True, f"starts with {check.value[:EXCERPT]!r}"
    return False, f"starts: {excerpt(text)}"


@lru_cache(maxsize=32)
def _schema_file(path: str) -> Any:
    from qwenchat.structured.schema import load_schema

    return load_schema(Path(path))


def _json_schema(check: Check, answer: Answer) -> tuple[bool, str]:
    from qwenchat.structured.check import validate_answer

    schema = _schema_file(check.value) if isinstance(check.value, str) else check.value
    return validate_answer(answer.visible, schema)


def _max_tokens(check: Check, answer: Answer) -> tuple[bool, str]:
    n = answer.generated_tokens
    if n is None:
        return False, "the token count is unknown"
    return n <= check.value, f"{n} tokens (at most {check.value})"


def _finish(check: Check, answer: Answer) -> tuple[bool, str]:
    got = answer.finish_reason or "unknown"
    return got == check.value, f"finished by {got}"


def _think(check: Check, answer: Answer) -> tuple[bool, str]:
    think = answer.think
    present = think is not None and bool(think.strip())
    if check.value == "present" and not present:
        return False, "no think block"
    if check.value == "absent" and present:
        return False, f"a think block: {excerpt(think or '')}"
    limit = check.options.get("max_tokens")
    if limit is None:
        return True, "a think block" if present else "no think block"
    n = answer.thinking_tokens if present else 0
    if n is None:
        return False, "the think block's token count is unknown"
    return n <= limit, f"{n} think tokens (at most {limit})"


def subset(want: Any, got: Any) -> bool:
    """`want` is within `got`: an object's keys with matching values (recursively), anything else equal."""
    if isinstance(want, dict):
        return isinstance(got, dict) and all(k in got and subset(v, got[k]) for k, v in want.items())
    if isinstance(want, bool) or isinstance(got, bool):  # True is not 1 here
        return want is got
    return bool(want == got)


def _tool_call(check: Check, answer: Answer) -> tuple[bool, str]:
    calls = answer.calls()
    named = [c for c in calls if c.get("name") == check.value]
    if not named:
        made = ", ".join(str(c.get("name")) for c in calls) or "none"
        return False, f"no call to {check.value} (calls: {made})"
    want = check.options.get("arguments")
    if want is None:
        return True, f"called {check.value}"
    for c in named:
        if subset(want, c.get("arguments")):
            return True, f"called {check.value} with {json.dumps(want, ensure_ascii=False)[:EXCERPT]}"
    got = json.dumps(named[0].get("arguments"), ensure_ascii=False)
    return False, f"{check.value} called with {got[:EXCERPT]}"


GRADERS = {
    "contains": _contains,
    "not_contains": _contains,
    "regex": _regex,
    "equals": _equals,
    "starts_with": _starts_with,
    "json_schema": _json_schema,
    "max_tokens": _max_tokens,
    "finish": _finish,
    "think": _think,
    "tool_call": _tool_call,
}


def verdict(check: Check, answer: Answer, judge: Judge | None = None) -> dict[str, Any]:
    """One check's verdict on one answer."""
    out: dict[str, Any] = {"name": check.name, "kind": check.kind}
    if check.kind == "judge":
        ok, detail, extra = judge_verdict(check.value, answer.prompt, answer.visible, answer.reference, judge)
        out.update({"pass": ok, "detail": detail, "source": check.source, "check": check.spec()})
        if extra is not None:
            out["judge"] = extra
        return out
    ok, detail = GRADERS[check.kind](check, answer)
    out.update({"pass": ok, "detail": detail, "source": check.source, "check": check.spec()})
    return out


def grade(checks: list[Check], answer: Answer, judge: Judge | None = None) -> dict[str, Any]:
    """The record fields of a graded answer: `checks` (the verdicts) and `passed` (all of them); nothing
    when there are no checks."""
    if not checks:
        return {}
    verdicts = [verdict(c, answer, judge) for c in checks]
    return {"checks": verdicts, "passed": all(v["pass"] for v in verdicts)}
