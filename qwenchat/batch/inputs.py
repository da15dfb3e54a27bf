"""Reading prompt files: text (a prompt a line, `\"\"\"` blocks), JSONL (a prompt or a message list per
record) or CSV (a `prompt` column; other columns fill placeholders), and `{{name}}` placeholders from a
variables CSV. Every problem is one BatchError line naming the file and the line, before anything runs."""

from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qwenchat.errors import UserError

PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_.-]*)\s*\}\}")
BLOCK = '"""'
CHECK_LINE = "@check "
MAX_FILE_BYTES = 64 * 1024 * 1024  # a prompt file, not a data set: refuse what would fill the memory
ROLES = ("user", "assistant")


class BatchError(UserError):
    """A batch that cannot run (bad prompt file, variables, variants or results file); nothing ran."""


@dataclass
class Prompt:
    """One prompt of the file: the messages up to and including the last user message."""

    index: int  # 1-based, in file order
    line: int  # where it starts in the file, for messages
    messages: list[dict[str, str]]  # user/assistant turns; the last one is the user's
    system: str | None = None  # None: the run's default system prompt
    has_system: bool = False  # the record set "system" (null included: no system prompt)
    settings: dict[str, Any] = field(default_factory=dict)
    variables: dict[str, str] = field(default_factory=dict)  # a CSV row's other columns
    reference: str | None = None  # a known good answer: scored (ref_logprob, ref_ppl), kept beside the record
    checks: list[dict[str, Any]] = field(default_factory=list)  # the prompt's own check specs, as written
    seed: int | None = None  # the prompt's own seed (a case kept with :keep); None: the run's seeds

    @property
    def text(self) -> str:
        return self.messages[-1]["content"]


def _read_text(path: str | Path, what: str) -> str:
    p = Path(path)
    try:
        if p.stat().st_size > MAX_FILE_BYTES:
            raise BatchError(f"{path}: {what} is larger than {MAX_FILE_BYTES // 2**20} MiB")
        return p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise BatchError(f"{path}: no such file ({what})") from None
    except IsADirectoryError:
        raise BatchError(f"{path}: is a directory, not a {what}") from None
    except UnicodeDecodeError as exc:
        raise BatchError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise BatchError(f"{path}: {exc.strerror or exc}") from None


def read_prompts(path: str | Path) -> list[Prompt]:
    """The prompts of `path`, by its extension: .jsonl/.ndjson, .csv, .toml, anything else as text."""
    text = _read_text(path, "prompt file")
    suffix = Path(path).suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        prompts = parse_jsonl(text, str(path))
    elif suffix == ".toml":
        prompts = parse_toml(text, str(path))
    elif suffix == ".csv":
        prompts = parse_csv(text, str(path))
    else:
        prompts = parse_text(text, str(path))
    if not prompts:
        raise BatchError(f"{path}: no prompts in it")
    return prompts


def parse_text(text: str, name: str = "prompts") -> list[Prompt]:
    """A prompt a line (blank lines skipped); a line `\"\"\"` opens a multi-line prompt up to the next such
    line (a prompt may also start right after the quotes and end right before the closing ones). A line
    `@check contains=Paris ...` gives checks to the prompt above it (qwenchat/checks/spec.py)."""
    prompts: list[Prompt] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        start = i + 1
        if line.strip().startswith(BLOCK):
            first = line.strip()[len(BLOCK) :]
            if first.endswith(BLOCK) and len(first) >= len(BLOCK):  # """one line"""
                body = first[: -len(BLOCK)]
            else:
                body_lines = [first] if first else []
                i += 1
                while i < len(lines) and not lines[i].rstrip().endswith(BLOCK):
                    body_lines.append(lines[i])
                    i += 1
                if i >= len(lines):
                    raise BatchError(f'{name} line {start}: a """ block is never closed')
                last = lines[i].rstrip()[: -len(BLOCK)]
                if last.strip():
                    body_lines.append(last)
                body = "\n".join(body_lines)
            if not body.strip():
                raise BatchError(f'{name} line {start}: an empty """ block')
            prompts.append(_user_prompt(len(prompts) + 1, start, body))
        elif line.startswith(CHECK_LINE):
            if not prompts:
                raise BatchError(f"{name} line {start}: {CHECK_LINE.strip()} before any prompt")
            prompts[-1].checks.extend(_inline(line[len(CHECK_LINE) :], f"{name} line {start}"))
        elif line.strip():
            prompts.append(_user_prompt(len(prompts) + 1, start, line.strip()))
        i += 1
    return prompts


def _inline(text: str, where: str) -> list[Any]:
    from qwenchat.checks.spec import inline_specs

    return inline_specs(text, where)


def _user_prompt(index: int, line: int, text: str) -> Prompt:
    return Prompt(index, line, [{"role": "user", "content": text}])


def parse_jsonl(text: str, name: str = "prompts") -> list[Prompt]:
    """One JSON value a line: a string (the prompt), a list of messages, or an object with `prompt` or
    `messages` and optional `system` (text or null) and `settings` (an object)."""
    prompts: list[Prompt] = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        where = f"{name} line {n}"
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            raise BatchError(f"{where}: not JSON ({exc.msg} at column {exc.colno})") from None
        prompts.append(_from_json(value, len(prompts) + 1, n, where))
        if isinstance(value, dict) and "images" in value:
            prompts[-1].messages[-1]["images"] = _images(value["images"], Path(name).parent, where)
    return prompts


def _images(raw: Any, base: Path, where: str) -> list[dict[str, Any]]:
    """A record's `images` (paths, relative to the prompt file's folder): each read and checked now, kept as
    its record (path, size, pixels, SHA-256), so a changed image is a changed prompt."""
    from qwenchat.images.load import ImageError, read_image

    if not isinstance(raw, list) or not all(isinstance(p, str) and p.strip() for p in raw):
        raise BatchError(f"{where}: 'images' must be a list of image paths")
    try:
        return [read_image(base / Path(p).expanduser(), p).to_dict() for p in raw]
    except ImageError as exc:
        raise BatchError(f"{where}: {exc}") from None


def _from_json(value: Any, index: int, line: int, where: str) -> Prompt:
    if isinstance(value, str):
        value = {"prompt": value}
    elif isinstance(value, list):
        value = {"messages": value}
    if not isinstance(value, dict):
        raise BatchError(f"{where}: expected a prompt, a message list or an object")
    unknown = set(value) - {
        "prompt",
        "messages",
        "system",
        "settings",
        "id",
        "images",
        "reference",
        "checks",
        "seed",
    }
    if unknown:
        raise BatchError(f"{where}: unknown field(s) {', '.join(sorted(unknown))}")
    if ("prompt" in value) == ("messages" in value):
        raise BatchError(f"{where}: give either 'prompt' or 'messages'")
    system, has_system = value.get("system"), "system" in value
    if "prompt" in value:
        if not isinstance(value["prompt"], str) or not value["prompt"].strip():
            raise BatchError(f"{where}: 'prompt' must be non-empty text")
        messages = [{"role": "user", "content": value["prompt"]}]
    else:
        messages, in_list = _messages(value["messages"], where)
        if in_list is not None:
            if has_system:
                raise BatchError(f"{where}: a system message and a 'system' field; give one")
            system, has_system = in_list, True
    if system is not None and not isinstance(system, str):
        raise BatchError(f"{where}: 'system' must be text or null")
    settings = value.get("settings", {})
    if not isinstance(settings, dict) or not all(isinstance(k, str) for k in settings):
        raise BatchError(f"{where}: 'settings' must be an object of setting: value")
    reference = value.get("reference")
    if reference is not None and (not isinstance(reference, str) or not reference.strip()):
        raise BatchError(f"{where}: 'reference' must be non-empty text")
    checks = value.get("checks", [])
    if not isinstance(checks, list) or not all(isinstance(c, dict) for c in checks):
        raise BatchError(f"{where}: 'checks' must be a list of objects")
    seed = value.get("seed")
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < 2**32):
        raise BatchError(f"{where}: 'seed' must be an integer in 0..4294967295")
    return Prompt(
        index,
        line,
        messages,
        system,
        has_system,
        dict(settings),
        reference=reference,
        checks=checks,
        seed=seed,
    )


def parse_toml(text: str, name: str = "prompts") -> list[Prompt]:
    """A suite: `[[prompts]]` tables with the fields of a JSONL object (prompt or messages, system, settings,
    reference, seed, checks), and top-level `[[checks]]` that every prompt of the file gets after its own."""
    import sys

    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib

    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise BatchError(f"{name}: not TOML ({exc})") from None
    unknown = set(data) - {"prompts", "checks"}
    if unknown:
        raise BatchError(f"{name}: unknown key(s) {', '.join(sorted(unknown))} (expected prompts, checks)")
    tables, shared = data.get("prompts", []), data.get("checks", [])
    if not isinstance(tables, list) or not isinstance(shared, list):
        raise BatchError(f"{name}: 'prompts' and 'checks' are arrays of tables ([[prompts]], [[checks]])")
    # where each [[prompts]] table starts, for messages (tomllib keeps no line numbers)
    starts = [n for n, line in enumerate(text.splitlines(), 1) if line.strip().startswith("[[prompts]]")]
    prompts = []
    for i, value in enumerate(tables):
        line = starts[i] if i < len(starts) else 0
        prompt = _from_json(value, i + 1, line, f"{name} line {line}" if line else f"{name} prompt {i + 1}")
        prompt.checks = [*prompt.checks, *shared]
        prompts.append(prompt)
    return prompts


def _messages(raw: Any, where: str) -> tuple[list[dict[str, str]], str | None]:
    """The user/assistant turns of a message list, and its leading system message (None without one)."""
    if not isinstance(raw, list) or not raw:
        raise BatchError(f"{where}: 'messages' must be a non-empty list")
    system = None
    out = []
    for i, m in enumerate(raw):
        if not isinstance(m, dict) or not isinstance(m.get("content"), str):
            raise BatchError(f"{where}: message {i + 1} needs a 'role' and text 'content'")
        role = m.get("role")
        if role == "system" and i == 0:
            system = m["content"]
            continue
        if role not in ROLES:
            raise BatchError(f"{where}: message {i + 1} has role {role!r}; expected user or assistant")
        out.append({"role": role, "content": m["content"]})
    if not out or out[-1]["role"] != "user":
        raise BatchError(f"{where}: the last message must be the user's (the one to answer)")
    return out, system


def _csv_rows(text: str, name: str) -> tuple[list[str], list[tuple[int, dict[str, str]]]]:
    """The header and the rows (with their line numbers) of a CSV; ragged rows are errors."""
    reader = csv.reader(text.splitlines())
    try:
        header = next(reader, None)
        if not header or not any(h.strip() for h in header):
            raise BatchError(f"{name}: no header row")
        header = [h.strip() for h in header]
        dup = sorted({h for h in header if header.count(h) > 1})
        if dup or "" in header:
            what = "duplicate " + ", ".join(dup) if dup else "an empty name"
            raise BatchError(f"{name}: header has {what}")
        rows = []
        for row in reader:
            if not any(c.strip() for c in row):
                continue
            if len(row) != len(header):
                raise BatchError(
                    f"{name} line {reader.line_num}: {len(row)} fields, the header has {len(header)}"
                )
            rows.append((reader.line_num, dict(zip(header, row, strict=True))))
    except csv.Error as exc:
        raise BatchError(f"{name} line {reader.line_num}: {exc}") from None
    return header, rows


def parse_csv(text: str, name: str = "prompts") -> list[Prompt]:
    """A `prompt` column (and optional `system`, `reference` and `checks` columns, the checks written as on
    a line: `contains=Paris finish=stop`); the other columns fill that row's placeholders."""
    header, rows = _csv_rows(text, name)
    if "prompt" not in header:
        raise BatchError(f"{name}: no 'prompt' column (columns: {', '.join(header)})")
    prompts = []
    for line, row in rows:
        body = row.pop("prompt")
        if not body.strip():
            raise BatchError(f"{name} line {line}: empty prompt")
        has_system = "system" in row
        system = row.pop("system", None)
        reference = row.pop("reference", None)
        checks = row.pop("checks", "")
        prompt = _user_prompt(len(prompts) + 1, line, body)
        prompt.reference = reference if reference and reference.strip() else None
        prompt.system, prompt.has_system, prompt.variables = system or None, has_system, row
        prompt.reference = reference or None
        prompt.checks = _inline(checks, f"{name} line {line}")
        prompts.append(prompt)
    return prompts


def read_vars(path: str | Path) -> list[dict[str, str]]:
    """The rows of a variables CSV (a header of names, a row per set of values)."""
    _, rows = _csv_rows(_read_text(path, "variables file"), str(path))
    if not rows:
        raise BatchError(f"{path}: no rows of variables")
    return [row for _, row in rows]


def placeholders(text: str) -> list[str]:
    return PLACEHOLDER.findall(text)


def fill(text: str, values: dict[str, str]) -> str:
    # check_placeholders refused unknown names before anything ran; one left here stays as written
    return PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), text)


def check_placeholders(prompts: list[Prompt], var_names: set[str], name: str = "prompts") -> None:
    """Every `{{name}}` has a value: one error naming the first that has none (and what there is)."""
    for p in prompts:
        known = var_names | set(p.variables)
        texts = [m["content"] for m in p.messages] + ([p.system] if p.system else [])
        for t in texts:
            for key in placeholders(t):
                if key not in known:
                    have = ", ".join(sorted(known)) or "none; use --vars FILE.csv"
                    raise BatchError(
                        f"{name} line {p.line}: placeholder {{{{{key}}}}} has no value (variables: {have})"
                    )


def filled(prompt: Prompt, values: dict[str, str]) -> tuple[list[dict[str, str]], str | None]:
    """The prompt's messages and system prompt with its placeholders filled."""
    values = {**prompt.variables, **values}
    messages = [{**m, "content": fill(m["content"], values)} for m in prompt.messages]  # images stay
    system = fill(prompt.system, values) if prompt.system is not None else None
    return messages, system
