"""The results file: one JSON record a line, appended, flushed and fsynced one at a time, so that Ctrl-C or
kill -9 loses no finished record. A kill mid-write leaves a torn last line (no newline): it is cut off when
the file is opened again (its run is done again), never read as a record and never repeated."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import IO, Any

from qwenchat.batch.inputs import BatchError

REQUIRED = ("key", "id", "prompt_index", "seed", "answer")


def _parse(line: bytes, where: str) -> dict[str, Any]:
    try:
        record = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise BatchError(f"{where}: not a JSON record") from None
    if not isinstance(record, dict) or any(k not in record for k in REQUIRED):
        raise BatchError(f"{where}: not a qwenchat batch record (needs {', '.join(REQUIRED)})")
    return record


def read_records(path: str | Path) -> tuple[list[dict[str, Any]], bool]:
    """The records of a results file, and whether its last line was torn (no newline: a killed write),
    which is left out. A bad line anywhere else is a BatchError naming it."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise BatchError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise BatchError(f"{path}: is a directory, not a results file") from None
    except OSError as exc:
        raise BatchError(f"{path}: {exc.strerror or exc}") from None
    lines = data.split(b"\n")
    torn = lines.pop() != b""  # the text after the last newline: empty unless a write was cut
    records = [_parse(line, f"{path} line {n}") for n, line in enumerate(lines, 1) if line.strip()]
    seen: set[str] = set()
    for r in records:
        if r["key"] in seen:
            raise BatchError(f"{path}: record {r['key']} appears twice")
        seen.add(r["key"])
    return records, torn


class ResultsFile:
    """An open results file for appending; `done` maps the key of every finished run to its record."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.done: dict[str, dict[str, Any]] = {}
        self.torn = False  # a torn last line was cut off on opening
        self.written = 0
        self._file: IO[bytes] | None = None

    def open(self) -> ResultsFile:
        if self.path.exists():
            records, self.torn = read_records(self.path)
            self.done = {r["key"]: r for r in records}
            if self.torn:  # cut the torn line, so that the next record starts on a line of its own
                size = self.path.stat().st_size
                data = self.path.read_bytes()
                keep = data.rfind(b"\n") + 1
                with open(self.path, "r+b") as f:
                    f.truncate(keep if keep < size else size)
                    os.fsync(f.fileno())
        try:
            self._file = open(self.path, "ab")
        except OSError as exc:
            raise BatchError(f"{self.path}: cannot write it ({exc.strerror or exc})") from None
        return self

    def append(self, record: dict[str, Any]) -> None:
        """One line, written whole in one call, flushed and fsynced before the next run starts."""
        assert self._file is not None
        line = json.dumps(record, ensure_ascii=True) + "\n"  # ASCII: escapes keep controls off any terminal
        self._file.write(line.encode("ascii"))
        self._file.flush()
        os.fsync(self._file.fileno())
        self.done[record["key"]] = record
        self.written += 1

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> ResultsFile:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()
