"""A `--checks FILE` of shared checks, applied to every prompt: JSON (a list, or {"checks": [...]}), JSONL
(one check a line) or TOML (`[[checks]]` tables). Read and checked before anything runs."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from qwenchat.checks.spec import Check, CheckError, parse_checks

MAX_FILE_BYTES = 4 * 1024 * 1024

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


def _read(path: Path) -> str:
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            raise CheckError(f"{path}: larger than {MAX_FILE_BYTES // 2**20} MiB: not a checks file")
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CheckError(f"{path}: no such file (checks)") from None
    except IsADirectoryError:
        raise CheckError(f"{path}: is a directory, not a checks file") from None
    except UnicodeDecodeError as exc:
        raise CheckError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise CheckError(f"{path}: {exc.strerror or exc}") from None


def read_checks(path: str | Path) -> list[Check]:
    """The shared checks of a file, by its extension (.toml, .jsonl/.ndjson, else JSON)."""
    p = Path(path).expanduser()
    text = _read(p)
    base = p.resolve().parent  # a schema file named in it: next to it, recorded as an absolute path
    suffix = p.suffix.lower()
    checks: list[Check] = []
    if suffix in (".jsonl", ".ndjson"):
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                raw: Any = json.loads(line)
            except (ValueError, RecursionError) as exc:
                raise CheckError(f"{p} line {n}: not JSON ({exc})") from None
            found = parse_checks(raw, f"{p} line {n}", base=base, source="shared")
            checks.extend(found)
    else:
        if suffix == ".toml":
            try:
                raw = tomllib.loads(text)
            except tomllib.TOMLDecodeError as exc:
                raise CheckError(f"{p}: not TOML ({exc})") from None
        else:
            try:
                raw = json.loads(text)
            except (ValueError, RecursionError) as exc:
                raise CheckError(f"{p}: not JSON ({exc})") from None
        if isinstance(raw, dict):
            unknown = set(raw) - {"checks"}
            if unknown:
                raise CheckError(f"{p}: unknown key(s) {', '.join(sorted(unknown))} (expected 'checks')")
            raw = raw.get("checks", [])
        checks = parse_checks(raw, str(p), base=base, source="shared")
    if not checks:
        raise CheckError(f"{p}: no checks in it")
    return checks


def own_checks(
    raw: list[Any], where: str, *, base: Path | None = None, has_reference: bool = True
) -> list[Check]:
    """A prompt's own checks (as its file wrote them), checked; `where` names the prompt's line."""
    checks = parse_checks(raw, where, base=base)
    for i, c in enumerate(checks, 1):
        if c.kind == "equals" and c.value is None and not has_reference:
            raise CheckError(
                f"{where}: check {i} (equals): no text to compare, and the prompt has no reference"
            )
    return checks
