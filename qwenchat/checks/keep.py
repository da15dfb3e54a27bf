"""`:keep FILE`: the last exchange of a chat as a JSONL test case that `qwenchat batch` replays (the
conversation up to the last user message, the system prompt, the settings that differ from the model's,
the seed, the answer as `reference`, and the checks typed with it). Appended in one write, fsynced."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from qwenchat.checks.spec import Check
from qwenchat.conversation.model import Conversation
from qwenchat.errors import UserError

_MISSING = object()


class KeepError(UserError):
    """The exchange cannot be kept (nothing to keep, a form a batch file cannot hold, a file that cannot be
    written): one line, and the file is as it was."""


def changed_settings(effective: dict[str, Any], model_defaults: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in effective.items() if model_defaults.get(k, _MISSING) != v}


def make_case(
    conversation: Conversation, settings: dict[str, Any], seed: int, checks: list[Check]
) -> dict[str, Any]:
    """The test case of the last exchange; KeepError when there is none, or when the conversation holds
    what a batch file cannot replay (tool calls and results)."""
    msgs = conversation.messages
    if not msgs or msgs[-1].role != "assistant":
        raise KeepError("there is no answer to keep yet")
    last_user = max((i for i, m in enumerate(msgs) if m.role == "user"), default=None)
    if last_user is None:
        raise KeepError("there is no message of yours to keep")
    asked = msgs[: last_user + 1]
    answer = msgs[last_user + 1 :]
    if any(m.role not in ("user", "assistant") or m.tool_calls for m in [*asked, *answer]):
        raise KeepError("this conversation has tool calls: a batch file cannot replay them")
    if len(answer) != 1:
        raise KeepError("the last answer is not a single message: nothing to keep")
    case: dict[str, Any] = {
        "messages": [{"role": m.role, "content": m.content} for m in asked],
        "system": conversation.system,
        "settings": settings,
        "seed": seed,
        "reference": answer[0].content,
    }
    if checks:
        case["checks"] = [c.spec() for c in checks]
    return case


def append_case(path: str | Path, case: dict[str, Any]) -> int:
    """Append `case` as one line (a file not ending in a newline gets one first); returns how many cases
    the file holds now."""
    p = Path(path).expanduser()
    if p.suffix.lower() not in (".jsonl", ".ndjson"):
        raise KeepError(f"{p}: test cases are kept in a .jsonl file (a prompt file qwenchat batch reads)")
    line = (json.dumps(case, ensure_ascii=False) + "\n").encode("utf-8", errors="surrogatepass")
    try:
        data = p.read_bytes() if p.exists() else b""
        prefix = b"\n" if data and not data.endswith(b"\n") else b""
        fd = os.open(p, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            view = memoryview(prefix + line)
            while view:  # O_APPEND: each write lands at the end, whatever else writes the file
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
    except IsADirectoryError:
        raise KeepError(f"{p}: is a directory") from None
    except OSError as exc:
        raise KeepError(f"{p}: cannot write it ({exc.strerror or exc})") from None
    return sum(1 for x in (data + prefix + line).splitlines() if x.strip())
