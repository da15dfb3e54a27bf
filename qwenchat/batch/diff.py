"""`qwenchat diff OLD NEW`: the answers of two batch runs matched by prompt, variables row, variant
(what it overrides, not its letter) and seed; where both were graded, the verdicts that changed come first
(passed -> failed, failed -> passed). Exit status 0 when every answer and verdict is the same and both
sides hold the same runs, 1 when something changed, 2 on bad input."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qwenchat.batch.records import read_records
from qwenchat.models.identity import differences
from qwenchat.text.worddiff import DiffSummary, summarize


def match_key(record: dict[str, Any]) -> tuple[Any, ...]:
    overrides = record.get("variant_overrides") or {}
    return (
        record.get("prompt_index"),
        record.get("vars_index"),
        json.dumps(overrides, sort_keys=True),
        record.get("seed"),
    )


@dataclass
class Pair:
    old: dict[str, Any]
    new: dict[str, Any]
    summary: DiffSummary

    @property
    def prompt_changed(self) -> bool:
        return self.old.get("messages") != self.new.get("messages")

    @property
    def verdict_change(self) -> str | None:
        """ "failed" (passed before, fails now), "passed" (the other way), or None: no change, or a side
        that was not graded."""
        a, b = self.old.get("passed"), self.new.get("passed")
        if not isinstance(a, bool) or not isinstance(b, bool) or a == b:
            return None
        return "passed" if b else "failed"

    def checks_changed(self) -> list[tuple[str, bool | None, bool | None]]:
        """(check name, passed before, passed now) for each check whose verdict differs (None: absent)."""
        before, now = _by_name(self.old), _by_name(self.new)
        names = list(dict.fromkeys([*before, *now]))
        return [(n, before.get(n), now.get(n)) for n in names if before.get(n) != now.get(n)]


def _by_name(record: dict[str, Any]) -> dict[str, bool]:
    verdicts = record.get("checks")
    if not isinstance(verdicts, list):
        return {}
    return {str(v.get("name")): bool(v.get("pass")) for v in verdicts if isinstance(v, dict)}


@dataclass
class DiffReport:
    changed: list[Pair] = field(default_factory=list)
    same: list[Pair] = field(default_factory=list)
    only_old: list[dict[str, Any]] = field(default_factory=list)
    only_new: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # torn last lines left out

    @property
    def now_failing(self) -> list[Pair]:
        return [p for p in self.changed + self.same if p.verdict_change == "failed"]

    @property
    def now_passing(self) -> list[Pair]:
        return [p for p in self.changed + self.same if p.verdict_change == "passed"]

    @property
    def exit_code(self) -> int:
        verdicts = self.now_failing or self.now_passing
        return 1 if self.changed or self.only_old or self.only_new or verdicts else 0

    def one_line(self) -> str:
        parts = []
        if self.now_failing or self.now_passing:
            parts = [f"{len(self.now_failing)} passed -> failed", f"{len(self.now_passing)} failed -> passed"]
        parts += [f"{len(self.same)} identical", f"{len(self.changed)} changed"]
        if self.only_old:
            parts.append(f"{len(self.only_old)} only in old")
        if self.only_new:
            parts.append(f"{len(self.only_new)} only in new")
        prompts = sum(p.prompt_changed for p in self.changed + self.same)
        if prompts:
            parts.append(f"{prompts} with a changed prompt")
        return ", ".join(parts)


def diff_records(old: list[dict[str, Any]], new: list[dict[str, Any]]) -> DiffReport:
    report = DiffReport()
    new_by = {match_key(r): r for r in new}
    old_keys = set()
    for r in old:
        k = match_key(r)
        old_keys.add(k)
        other = new_by.get(k)
        if other is None:
            report.only_old.append(r)
            continue
        a, b = str(r.get("answer", "")), str(other.get("answer", ""))
        pair = Pair(r, other, summarize(a, b))
        (report.same if a == b else report.changed).append(pair)
    report.only_new = [r for r in new if match_key(r) not in old_keys]
    return report


def diff_files(old: str | Path, new: str | Path) -> DiffReport:
    """BatchError (one line) for a missing or malformed file."""
    (a, torn_a), (b, torn_b) = read_records(old), read_records(new)
    for records, path in ((a, old), (b, new)):
        keys = [match_key(r) for r in records]
        if len(set(keys)) != len(keys):
            from qwenchat.batch.inputs import BatchError

            raise BatchError(f"{path}: two records for the same prompt, variant and seed")
    report = diff_records(a, b)
    cut = [p for p, t in ((old, torn_a), (new, torn_b)) if t]
    report.notes = [f"{p}: its last line was cut by a killed write; left out" for p in cut]
    report.notes += fingerprint_notes(a, b)
    return report


def fingerprint_notes(old: list[dict[str, Any]], new: list[dict[str, Any]]) -> list[str]:
    """One line when the two runs were made on different setups (weights, dtype, device, threads, library
    versions, CPU): their answers may then differ without any change to the prompts or settings."""

    def setups(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        seen: dict[str, dict[str, Any]] = {}
        for r in records:
            fp = r.get("fingerprint")
            if isinstance(fp, dict):
                seen.setdefault(json.dumps(fp, sort_keys=True), fp)
        return list(seen.values())

    a, b = setups(old), setups(new)
    if not a or not b or a == b:
        return []
    changes = differences(a[0], b[0]) if len(a) == len(b) == 1 else ["the runs mix setups"]
    return ["the runs were made on different setups, so answers may differ: " + "; ".join(changes)]
