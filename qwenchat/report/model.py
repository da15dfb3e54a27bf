"""What a report shows, read from a results file's records: the prompt x variant matrix (each cell one
record per seed), the verdicts and pass rates (per variant, per check), the settings every run shared, and
each record's counterpart in variant A for the word diff. No HTML here (page.py draws it)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

RowKey = tuple[Any, Any]  # (prompt_index, vars_index)


def _sort_key(value: Any) -> tuple[int, Any]:
    """Records come from a file: an index may be missing or of another type; such ones sort last."""
    if isinstance(value, int) and not isinstance(value, bool):
        return (0, value)
    return (1, str(value))


def row_key(record: dict[str, Any]) -> RowKey:
    """Where a record's row is: its prompt and vars row (as text where a file holds something else)."""
    return (_hashable(record.get("prompt_index")), _hashable(record.get("vars_index")))


def _hashable(value: Any) -> Any:
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return json.dumps(value, sort_keys=True, default=str)


def verdict(record: dict[str, Any]) -> bool | None:
    """Whether a record passed its checks: `passed` where the run said, else all of its checks, else its
    --json-schema check; None for a record that was not checked."""
    passed = record.get("passed")
    if isinstance(passed, bool):
        return passed
    checks = checks_of(record)
    if checks:
        return all(c.get("pass") is True for c in checks)
    valid = record.get("json_valid")
    return valid if isinstance(valid, bool) else None


def checks_of(record: dict[str, Any]) -> list[dict[str, Any]]:
    """A record's check results (name, pass, detail, ...); anything that is not one is left out."""
    checks = record.get("checks")
    if not isinstance(checks, list):
        return []
    return [c for c in checks if isinstance(c, dict) and "name" in c]


@dataclass
class Rate:
    passed: int = 0
    total: int = 0

    def add(self, ok: bool) -> None:
        self.passed += ok
        self.total += 1

    @property
    def fraction(self) -> float | None:
        return self.passed / self.total if self.total else None


@dataclass
class Variant:
    label: str  # "A", "B", ... ("" for a batch without --grid)
    overrides: dict[str, Any]
    rate: Rate = field(default_factory=Rate)  # records with a verdict
    records: int = 0
    ref_logprobs: list[float] = field(default_factory=list)

    @property
    def title(self) -> str:
        return self.label or "answer"

    @property
    def mean_ref_logprob(self) -> float | None:
        return sum(self.ref_logprobs) / len(self.ref_logprobs) if self.ref_logprobs else None


@dataclass
class Row:
    key: RowKey
    prompt: str
    system: str | None
    messages: list[Any]  # the conversation as sent (earlier turns shown above the prompt)
    cells: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # variant label -> records by seed


@dataclass
class Report:
    title: str
    records: list[dict[str, Any]]
    rows: list[Row]
    variants: list[Variant]
    seeds: list[Any]
    shared: dict[str, Any]  # facts every record agrees on: model, engine, settings, system prompt, ...
    check_rates: dict[str, dict[str, Rate]]  # check name -> variant label -> rate
    notes: list[str] = field(default_factory=list)

    @property
    def baseline(self) -> str | None:
        """The variant every other one is diffed against: the first (A)."""
        return self.variants[0].label if len(self.variants) > 1 else None

    def counterpart(self, record: dict[str, Any]) -> dict[str, Any] | None:
        """The same prompt, vars row and seed in variant A; None in A itself or where A has no such run."""
        base = self.baseline
        if base is None or record.get("variant") == base:
            return None
        row = self._rows.get(row_key(record))
        if row is None:
            return None
        for other in row.cells.get(base, []):
            if other.get("seed") == record.get("seed"):
                return other
        return None

    def __post_init__(self) -> None:
        self._rows = {r.key: r for r in self.rows}


SHARED_FIELDS = ("model", "engine", "adapter", "system", "qwenchat_version")


def _common(records: Iterable[dict[str, Any]], key: str) -> tuple[bool, Any]:
    values = {json.dumps(r.get(key), sort_keys=True, default=str) for r in records}
    if len(values) == 1:
        return True, json.loads(values.pop())
    return False, None


def shared_settings(records: list[dict[str, Any]]) -> dict[str, Any]:
    """The settings every record ran with (a variant's or a prompt's own are shown where they differ)."""
    dicts = [r.get("settings") if isinstance(r.get("settings"), dict) else {} for r in records]
    if not dicts:
        return {}
    keys = set(dicts[0]).intersection(*dicts[1:])
    return {k: dicts[0][k] for k in sorted(keys) if all(d[k] == dicts[0][k] for d in dicts[1:])}


def build(records: list[dict[str, Any]], title: str) -> Report:
    """The report of some records (in any order; the file's order is kept within a cell)."""
    variants: dict[str, Variant] = {}
    rows: dict[RowKey, Row] = {}
    check_rates: dict[str, dict[str, Rate]] = {}
    seeds: list[Any] = []
    for r in records:
        label = str(r.get("variant") or "")
        overrides = r.get("variant_overrides") if isinstance(r.get("variant_overrides"), dict) else {}
        v = variants.setdefault(label, Variant(label, overrides))
        v.records += 1
        ok = verdict(r)
        if ok is not None:
            v.rate.add(ok)
        if isinstance(r.get("ref_logprob"), int | float) and not isinstance(r.get("ref_logprob"), bool):
            v.ref_logprobs.append(float(r["ref_logprob"]))
        for c in checks_of(r):
            check_rates.setdefault(str(c["name"]), {}).setdefault(label, Rate()).add(c.get("pass") is True)
        if isinstance(r.get("json_valid"), bool) and not checks_of(r):
            check_rates.setdefault("json_valid", {}).setdefault(label, Rate()).add(r["json_valid"])
        key = row_key(r)
        row = rows.get(key)
        if row is None:
            messages = r.get("messages") if isinstance(r.get("messages"), list) else []
            row = rows[key] = Row(key, str(r.get("prompt", "")), r.get("system"), messages)
        row.cells.setdefault(label, []).append(r)
        if r.get("seed") not in seeds:
            seeds.append(r.get("seed"))
    for row in rows.values():
        for cell in row.cells.values():
            cell.sort(key=lambda rec: _sort_key(rec.get("seed")))
    ordered_rows = sorted(rows.values(), key=lambda row: (_sort_key(row.key[0]), _sort_key(row.key[1])))
    ordered_variants = [variants[k] for k in sorted(variants)]
    shared: dict[str, Any] = {}
    for key in SHARED_FIELDS:
        same, value = _common(records, key)
        if same and value is not None:
            shared[key] = value
    settings = shared_settings(records)
    if settings:
        shared["settings"] = settings
    times = sorted(str(r["finished_at"]) for r in records if r.get("finished_at"))
    if times:
        shared["finished"] = times[0] if times[0] == times[-1] else f"{times[0]} … {times[-1]}"
    return Report(
        title,
        records,
        ordered_rows,
        ordered_variants,
        sorted(seeds, key=_sort_key),
        shared,
        dict(sorted(check_rates.items())),
    )
