"""Grading a results file again: the checks of each record are the prompt's own ones it recorded, and the
shared ones: a new --checks file's, or else those it recorded."""

from __future__ import annotations

from typing import Any

from qwenchat.checks.spec import Check, CheckError, parse_check


def record_checks(record: dict[str, Any], shared: list[Check] | None, where: str) -> list[Check]:
    """The checks to grade `record` with; CheckError (one line naming the record) for a recorded spec
    that is no longer a check."""
    recorded = record.get("checks")
    if recorded is not None and not isinstance(recorded, list):
        raise CheckError(f"{where}: 'checks' is not a list of verdicts")
    own: list[Check] = []
    kept_shared: list[Check] = []
    for i, v in enumerate(recorded or [], 1):
        if not isinstance(v, dict) or not isinstance(v.get("check"), dict):
            raise CheckError(f"{where}: verdict {i} does not say which check it was")
        source = "shared" if v.get("source") == "shared" else "prompt"
        try:
            check = parse_check(v["check"], source=source)
        except CheckError as exc:
            raise CheckError(f"{where}: verdict {i}: {exc}") from None
        (kept_shared if source == "shared" else own).append(check)
    return [*own, *(shared if shared is not None else kept_shared)]
