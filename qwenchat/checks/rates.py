"""Pass rates over graded records: per variant and per check, the failures, and the exit status a CI job
reads (0: every graded record passed, or the rate is at least --fail-under; 1 otherwise)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from qwenchat.checks.spec import CheckError


def parse_rate(text: str) -> float:
    """`0.9` or `90%` as a fraction in [0, 1]."""
    raw = text.strip()
    try:
        value = float(raw[:-1]) / 100 if raw.endswith("%") else float(raw)
    except ValueError:
        raise CheckError(f"--fail-under: {raw!r} is not a rate (0.9 or 90%)") from None
    if not 0 <= value <= 1:
        raise CheckError(f"--fail-under: {raw} is not between 0 and 1 (or 0% and 100%)")
    return value


@dataclass
class Tally:
    passed: int = 0
    total: int = 0

    def add(self, ok: bool) -> None:
        self.total += 1
        self.passed += ok

    @property
    def rate(self) -> float:
        return self.passed / self.total if self.total else 1.0


@dataclass
class Failure:
    record: dict[str, Any]
    failed: list[dict[str, Any]]  # the verdicts that failed


@dataclass
class PassRates:
    records: Tally = field(default_factory=Tally)  # a record passes when all its checks pass
    by_variant: dict[str, Tally] = field(default_factory=dict)
    by_check: dict[str, Tally] = field(default_factory=dict)
    failures: list[Failure] = field(default_factory=list)
    ungraded: int = 0  # records without checks

    def add(self, record: dict[str, Any]) -> None:
        verdicts = record.get("checks")
        if not isinstance(verdicts, list) or not verdicts:
            self.ungraded += 1
            return
        ok = bool(record.get("passed"))
        self.records.add(ok)
        self.by_variant.setdefault(variant_label(record), Tally()).add(ok)
        for v in verdicts:
            if isinstance(v, dict):
                self.by_check.setdefault(str(v.get("name")), Tally()).add(bool(v.get("pass")))
        if not ok:
            self.failures.append(
                Failure(record, [v for v in verdicts if isinstance(v, dict) and not v.get("pass")])
            )

    def exit_code(self, fail_under: float | None = None) -> int:
        if not self.failures:
            return 0
        return 0 if fail_under is not None and self.records.rate >= fail_under else 1

    def one_line(self) -> str:
        r = self.records
        return f"{r.passed} of {r.total} passed ({100 * r.rate:.1f}%)" + (
            f", {self.ungraded} without checks" if self.ungraded else ""
        )


def variant_label(record: dict[str, Any]) -> str:
    """A variant as the table names it: its letter and what it overrides (`B temperature=0.7`)."""
    overrides = record.get("variant_overrides") or {}
    if not isinstance(overrides, dict) or not overrides:
        return "(all)"
    label = record.get("variant") or "?"
    return f"{label} " + " ".join(f"{k}={v}" for k, v in overrides.items())


def pass_rates(records: list[dict[str, Any]]) -> PassRates:
    rates = PassRates()
    for r in records:
        rates.add(r)
    return rates
