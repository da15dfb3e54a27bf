"""Tool calling without torch: definitions (loaded and checked), the `<tool_call>` streaming parser, mocks,
and the calls' shapes on the wire (the message fields a session stores are read in conversation.fields).

Qwen2.5 and Qwen3 answer a tool prompt with `<tool_call>\\n{"name": …, "arguments": {…}}\\n</tool_call>`
blocks after any text. A call is kept in the history as the assistant message's `tool_calls` (the block
taken out of its text, so the chat template writes it back exactly once); a result is a `tool` message.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qwenchat.errors import UserError
from qwenchat.text.think import partial_suffix

OPEN = "<tool_call>"
CLOSE = "</tool_call>"
MAX_FILE_BYTES = 1 << 20  # a definitions, mocks or result file larger than this is a mistake


class ToolsError(UserError):
    """A definitions, mocks or result file that cannot be used; one line per problem."""


@dataclass
class ToolCall:
    """One call as the model wrote it; `arguments` is None when `raw` was not JSON of the right shape."""

    raw: str  # the text between the tags, as generated
    name: str | None = None
    arguments: dict[str, Any] | None = None
    id: str = ""
    problem: str | None = None  # invalid JSON, no name, unknown tool: shown on the panel

    @property
    def valid(self) -> bool:
        return self.problem is None

    def to_message(self) -> dict[str, Any]:
        """The stored form (session file, chat templates): {"id", "name", "arguments"}."""
        return {"id": self.id, "name": self.name or "", "arguments": self.arguments or {}}


# -- definitions ---------------------------------------------------------------------------------
def _read_json(path: str | Path, what: str) -> Any:
    p = Path(path).expanduser()
    try:
        if p.stat().st_size > MAX_FILE_BYTES:
            raise ToolsError(f"{what} {p}: larger than {MAX_FILE_BYTES // 1024} KiB")
        text = p.read_text(encoding="utf-8")
    except ToolsError:
        raise
    except (OSError, UnicodeDecodeError) as exc:
        raise ToolsError(f"cannot read {what} {p}: {exc.__class__.__name__}: {exc}") from None
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise ToolsError(f"{what} {p} is not JSON: {exc}") from None


def check_definitions(data: Any) -> tuple[list[dict[str, Any]], list[str]]:
    """OpenAI-style function definitions, normalised to `{"type": "function", "function": {...}}`; a bare
    `{"name", "parameters"}` is accepted too. Returns (tools, errors), one error line per problem."""
    if isinstance(data, dict) and isinstance(data.get("tools"), list):
        data = data["tools"]
    if isinstance(data, dict):
        data = [data]
    if not isinstance(data, list):
        return [], ["expected a list of function definitions"]
    tools: list[dict[str, Any]] = []
    errors: list[str] = []
    seen: set[str] = set()
    for i, item in enumerate(data, start=1):
        where = f"tool {i}"
        if not isinstance(item, dict):
            errors.append(f"{where}: not an object")
            continue
        fn = item.get("function") if "function" in item else item
        if item.get("type", "function") != "function":
            errors.append(f"{where}: type must be 'function', got {item.get('type')!r}")
            continue
        if not isinstance(fn, dict):
            errors.append(f"{where}: 'function' is not an object")
            continue
        name = fn.get("name")
        if not isinstance(name, str) or not name.strip():
            errors.append(f"{where}: no 'name' (a non-empty string)")
            continue
        where = f"tool {i} ({name})"
        if name in seen:
            errors.append(f"{where}: defined twice")
        seen.add(name)
        desc = fn.get("description")
        if desc is not None and not isinstance(desc, str):
            errors.append(f"{where}: 'description' must be a string")
        params = fn.get("parameters", {"type": "object", "properties": {}})
        if not isinstance(params, dict):
            errors.append(f"{where}: 'parameters' must be a JSON schema object")
        elif params.get("type", "object") != "object":
            errors.append(f"{where}: 'parameters' must have type 'object'")
        elif "properties" in params and not isinstance(params["properties"], dict):
            errors.append(f"{where}: 'parameters.properties' must be an object")
        elif "required" in params and not (
            isinstance(params["required"], list) and all(isinstance(r, str) for r in params["required"])
        ):
            errors.append(f"{where}: 'parameters.required' must be a list of names")
        tools.append({"type": "function", "function": {**fn, "parameters": params}})
    if not tools and not errors:
        errors.append("no function definitions in the file")
    return tools, errors


def load_definitions(path: str | Path) -> list[dict[str, Any]]:
    """Definitions from a JSON file; ToolsError listing every problem (one line each) when any."""
    tools, errors = check_definitions(_read_json(path, "tools file"))
    if errors:
        raise ToolsError(f"{path}: " + "\n".join(errors))
    return tools


def tool_names(tools: list[dict[str, Any]] | None) -> list[str]:
    return [t["function"]["name"] for t in tools or []]


def load_mocks(path: str | Path) -> dict[str, Any]:
    """`{"tool name": result, ...}`: the result (any JSON) answers every call of that tool."""
    data = _read_json(path, "mocks file")
    if not isinstance(data, dict) or not data:
        raise ToolsError(f"{path}: expected a JSON object mapping tool names to results")
    return data


def result_text(value: Any) -> str:
    """A tool result as the message content: a string as it is, anything else as JSON."""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def read_result(arg: str) -> str:
    """`:tool-result JSON|@file`: the content of one tool message; ToolsError when it is not JSON."""
    arg = arg.strip()
    if not arg:
        raise ToolsError("give the result as JSON, or @file")
    value = _read_json(arg[1:], "result file") if arg.startswith("@") else _parse_json(arg)
    return result_text(value)


def _parse_json(text: str) -> Any:
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise ToolsError(f"the result is not JSON ({exc}); quote a plain string: '\"text\"'") from None


# -- parsing -------------------------------------------------------------------------------------
def parse_call(raw: str, known: list[str] | None = None, index: int = 0) -> ToolCall:
    """One block's body: `{"name": str, "arguments": object}` (arguments may be a JSON string, as some
    servers send them)."""
    call = ToolCall(raw=raw, id=f"call_{index}")
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        call.problem = f"invalid JSON: {exc}"
        return call
    if not isinstance(data, dict):
        call.problem = "invalid call: not a JSON object"
        return call
    name, args = data.get("name"), data.get("arguments", data.get("parameters", {}))
    if isinstance(args, str):
        try:
            args = json.loads(args) if args.strip() else {}
        except (ValueError, RecursionError) as exc:
            call.name = name if isinstance(name, str) else None
            call.problem = f"arguments are invalid JSON: {exc}"
            return call
    if not isinstance(name, str) or not name:
        call.problem = "invalid call: no 'name'"
        return call
    call.name = name
    if not isinstance(args, dict):
        call.problem = "invalid call: 'arguments' is not an object"
        return call
    call.arguments = args
    if known is not None and name not in known:
        call.problem = f"unknown tool {name!r} (defined: {', '.join(known) or 'none'})"
    return call


@dataclass
class CallParser:
    """Finds `<tool_call>…</tool_call>` blocks in streamed text, however it is cut into chunks; each
    finished block is parsed at once (`feed` returns the calls finished by that chunk)."""

    known: list[str] | None = None
    calls: list[ToolCall] = field(default_factory=list)
    _buf: str = ""
    _inside: bool = False

    def feed(self, text: str) -> list[ToolCall]:
        self._buf += text
        done: list[ToolCall] = []
        while True:
            if not self._inside:
                at = self._buf.find(OPEN)
                if at < 0:
                    keep = partial_suffix(self._buf, OPEN)
                    self._buf = self._buf[len(self._buf) - keep :] if keep else ""
                    return done
                self._buf, self._inside = self._buf[at + len(OPEN) :], True
            at = self._buf.find(CLOSE)
            if at < 0:
                return done
            call = parse_call(self._buf[:at].strip(), self.known, len(self.calls))
            self.calls.append(call)
            done.append(call)
            self._buf, self._inside = self._buf[at + len(CLOSE) :], False

    def finish(self) -> list[ToolCall]:
        """An opened block the answer never closed (a length stop, Ctrl-C) is reported as unfinished."""
        if not self._inside:
            return []
        call = ToolCall(raw=self._buf.strip(), id=f"call_{len(self.calls)}", problem="unfinished tool call")
        self.calls.append(call)
        self._inside, self._buf = False, ""
        return [call]


def split_calls(text: str, known: list[str] | None = None) -> tuple[str, list[ToolCall]]:
    """An answer's text without its valid call blocks, and every call found (valid or not). Invalid blocks
    stay in the text: nothing the model wrote is lost, and no template gets a call it cannot write."""
    parser = CallParser(known)
    parser.feed(text)
    parser.finish()
    if not any(c.name and c.arguments is not None for c in parser.calls):
        return text, parser.calls
    out, rest = [], text
    for call in parser.calls:
        at = rest.find(OPEN)
        end = rest.find(CLOSE, at)
        if at < 0 or end < 0:
            break
        if call.name and call.arguments is not None:
            out.append(rest[:at])
        else:
            out.append(rest[: end + len(CLOSE)])
        rest = rest[end + len(CLOSE) :]
    out.append(rest)
    return "".join(out).rstrip(), parser.calls


# -- the calls on the wire -----------------------------------------------------------------------
def api_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Template-shaped messages for an OpenAI-compatible server: arguments as a JSON string."""
    out = []
    for m in messages:
        if m.get("tool_calls"):
            m = dict(m)
            m["tool_calls"] = [
                {
                    "id": c.get("id") or f"call_{i}",
                    "type": "function",
                    "function": {
                        "name": c["function"]["name"],
                        "arguments": json.dumps(c["function"]["arguments"], ensure_ascii=False),
                    },
                }
                for i, c in enumerate(m["tool_calls"])
            ]
        out.append(m)
    return out


def pending_calls(messages: list[Any]) -> list[dict[str, Any]]:
    """The calls of the last assistant message that no tool message has answered yet, in order."""
    answered = 0
    for m in reversed(messages):
        if m.role == "tool":
            answered += 1
            continue
        if m.role == "assistant" and m.tool_calls:
            return list(m.tool_calls[answered:])
        return []
    return []


class DeltaAssembler:
    """A server's streamed `tool_calls` deltas put together per index, then written into the answer as the
    same `<tool_call>` blocks a local model writes, so one parser and one panel serve every engine."""

    def __init__(self) -> None:
        self._calls: dict[int, list[str]] = {}  # index -> [name, arguments so far]

    def add(self, index: int, name: str | None, arguments: str | None) -> None:
        call = self._calls.setdefault(index, ["", ""])
        call[0] += name or ""
        call[1] += arguments or ""

    def flush(self) -> str:
        """The finished calls as text (arguments as sent: invalid JSON stays visible to the parser)."""
        out = []
        for index in sorted(self._calls):
            name, args = self._calls[index]
            out.append(
                f'{OPEN}\n{{"name": {json.dumps(name)}, "arguments": {args.strip() or "{}"}}}\n{CLOSE}'
            )
        self._calls.clear()
        return "\n".join(out)
