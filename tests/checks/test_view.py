"""What checks show: the pass-rate tables and the failures, terminal-safe; :check's lines."""

from __future__ import annotations

import io

from qwenchat.checks.rates import pass_rates
from qwenchat.ui.checks import ChecksView, verdict_lines
from qwenchat.ui.terminal import make_console

EVIL = "\x1b]52;c;aGk=\x07\x1b[2J"


def record(variant: str, ok: bool, detail: str = "fine") -> dict:
    return {
        "prompt_index": 1,
        "variant": variant,
        "variant_overrides": {"temperature": variant},
        "seed": 3,
        "prompt": f"say {EVIL} something",
        "answer": f"an answer {EVIL} here",
        "checks": [{"name": f"contains {EVIL}", "pass": ok, "detail": detail}],
        "passed": ok,
    }


def test_tables_and_failures_are_terminal_safe():
    buf = io.StringIO()
    rates = pass_rates([record("A", True), record("B", False, f"missing in: {EVIL}")])
    ChecksView(make_console(buf, plain=True)).show(rates)
    text = buf.getvalue()
    assert "\x1b" not in text and "\x07" not in text
    assert "variant" in text and "A temperature=A" in text and "B temperature=B" in text
    assert "failures" in text and "prompt 1 · variant B · seed 3" in text and "✗ contains" in text
    assert "1 of 2 passed (50.0%)" in text and "  answer: an answer" in text


def test_verdict_lines():
    lines = [t.plain for t in verdict_lines([{"name": "a", "pass": True, "detail": EVIL}], colour=False)]
    assert lines[0].startswith("✓ a: ") and "\x1b" not in lines[0] and lines[-1] == "1 of 1 checks passed"


def test_nothing_graded():
    buf = io.StringIO()
    ChecksView(make_console(buf, plain=True)).show(pass_rates([{"answer": "x"}]))
    assert "no checks graded (1 records without checks)" in buf.getvalue()
