"""Where server data enters the OpenAI-compatible engine: each event (an SSE `data:` field, or a whole JSON
body) is parsed and checked against the shape the engine reads before anything reads it. A malformed event
becomes one line in words ("choices is not a list"), never an exception from deep in the reader; lone
surrogates (JSON allows "\\ud800") are replaced visibly, since no output stream can encode them."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from qwenchat.engines.openai.logprobs import BadLogprobs, parse_logprobs

_SURROGATE = re.compile("[\ud800-\udfff]")  # json.loads has paired the valid ones already: these are lone


class MalformedEvent(Exception):
    """What is wrong with an event, in words: "the server sent a malformed event: <this>"."""


def clean(text: str) -> str:
    """Text from the server made encodable: a lone surrogate becomes U+FFFD."""
    return _SURROGATE.sub("\ufffd", text)


def one_line(text: str, limit: int = 300) -> str:
    line = clean(" ".join(text.split()))
    return line if len(line) <= limit else line[: limit - 1] + "…"


def server_error_message(body: bytes) -> str:
    """The human part of an error body: OpenAI's {"error": {"message"}}, FastAPI's {"detail"}, or the text."""
    text = body.decode("utf-8", errors="replace").strip()
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):  # RecursionError: nested too deeply for the parser
        return one_line(text)
    if isinstance(data, dict):
        for key in ("error", "detail", "message"):
            value = data.get(key)
            if isinstance(value, dict):
                value = value.get("message") or value.get("msg") or json.dumps(value)
            elif isinstance(value, list):  # FastAPI validation errors
                value = "; ".join(str(v.get("msg", v)) if isinstance(v, dict) else str(v) for v in value)
            if value:
                return one_line(str(value))
    return one_line(text)


@dataclass
class ToolCallDelta:
    """A piece of one streamed tool call: `index` says which; name and arguments come in pieces."""

    index: int = 0
    id: str | None = None
    name: str | None = None
    arguments: str | None = None


@dataclass
class Choice:
    reasoning: str | None = None
    content: str | None = None
    finish_reason: str | None = None
    logprobs: list[Any] | None = None  # qwenchat.probs.record.TokenProb records, when asked for and sent
    tool_calls: list[ToolCallDelta] = field(default_factory=list)


@dataclass
class Usage:
    """The server's counts; a field that is not a non-negative integer is None (stats only: not worth an
    error)."""

    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cached_tokens: int | None = None


@dataclass
class Event:
    choices: list[Choice] = field(default_factory=list)
    usage: Usage | None = None
    error: str | None = None  # the server reported a failure mid-stream (vLLM and others do)
    system_fingerprint: str | None = None  # the server's backend configuration, when it names one
    whole: bool = False  # a whole completion: a server that ignored stream=True


def parse_event(value: str) -> Event:
    """One event's data, checked; MalformedEvent (in words) when it is not what the engine reads."""
    try:
        data = json.loads(value)
    except (ValueError, RecursionError):
        raise MalformedEvent(f"it is not JSON: {one_line(value, 120)}") from None
    if not isinstance(data, dict):
        raise MalformedEvent("it is not a JSON object")
    if data.get("error"):
        return Event(error=server_error_message(value.encode("utf-8", errors="replace")))
    choices = data.get("choices")
    if choices is None:
        choices = []
    if not isinstance(choices, list):
        raise MalformedEvent("choices is not a list")
    return Event(
        choices=[_choice(c) for c in choices],
        usage=_usage(data.get("usage")),
        whole=data.get("object") == "chat.completion",
        system_fingerprint=_fingerprint(data.get("system_fingerprint")),
    )


def _fingerprint(value: Any) -> str | None:
    """A server's system_fingerprint, kept to printable ASCII (it is shown and saved as sent otherwise)."""
    if not isinstance(value, str):
        return None
    text = "".join(c for c in value if c.isascii() and c.isprintable())[:100]
    return text or None


def _choice(choice: Any) -> Choice:
    if not isinstance(choice, dict):
        raise MalformedEvent("a choice is not an object")
    delta = choice.get("delta")
    if delta is None:
        delta = choice.get("message")  # a whole completion
    if delta is None:
        delta = {}
    if not isinstance(delta, dict):
        raise MalformedEvent("delta is not an object")
    finish = choice.get("finish_reason")
    if finish is not None and not isinstance(finish, str):
        raise MalformedEvent("finish_reason is not a string")
    reasoning = _text(delta, "reasoning_content") or _text(delta, "reasoning")  # vLLM, then others
    try:
        logprobs = parse_logprobs(choice.get("logprobs"))
    except BadLogprobs as exc:
        raise MalformedEvent(str(exc)) from None
    return Choice(reasoning, _text(delta, "content"), finish, logprobs, _tool_calls(delta.get("tool_calls")))


def _tool_calls(value: Any) -> list[ToolCallDelta]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise MalformedEvent("tool_calls is not a list")
    out = []
    for pos, call in enumerate(value):
        if not isinstance(call, dict):
            raise MalformedEvent("a tool call is not an object")
        index = call.get("index", pos)
        if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < 1024:
            raise MalformedEvent("a tool call's index is not a small integer")
        fn = call.get("function") or {}
        if not isinstance(fn, dict):
            raise MalformedEvent("a tool call's function is not an object")
        args = fn.get("arguments")
        if isinstance(args, dict | list):  # a whole completion from a lenient server: already parsed
            args = json.dumps(args, ensure_ascii=False)
        elif args is not None and not isinstance(args, str):
            raise MalformedEvent("a tool call's arguments are not a string")
        args = None if args is None else clean(args)
        out.append(ToolCallDelta(index, _text(call, "id"), _text(fn, "name"), args))
    return out


def _text(delta: dict[str, Any], key: str) -> str | None:
    value = delta.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise MalformedEvent(f"{key} is not a string")
    return clean(value)


def _usage(usage: Any) -> Usage | None:
    if not isinstance(usage, dict):
        return None
    details = usage.get("prompt_tokens_details")
    return Usage(
        prompt_tokens=_count(usage.get("prompt_tokens")),
        completion_tokens=_count(usage.get("completion_tokens")),
        cached_tokens=_count(details.get("cached_tokens")) if isinstance(details, dict) else None,
    )


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None
