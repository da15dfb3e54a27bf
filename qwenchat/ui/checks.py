"""What checks show: the pass rates per variant and per check, then the failures (prompt, variant, seed,
what failed, a short excerpt), and `:check`'s verdicts. Every text from a results file or a model goes
through visible_controls on its way here."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from qwenchat.text.visible import visible_controls as safe

if TYPE_CHECKING:
    from qwenchat.checks.rates import PassRates, Tally

PREVIEW_CHARS = 60
MAX_FAILURES = 50  # shown in full; the rest are counted (the records hold them all)


def _flat(text: Any, limit: int = PREVIEW_CHARS) -> str:
    flat = " ".join(safe(str(text)).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


class ChecksView:
    """The end of a graded run (`qwenchat batch` with checks, `qwenchat check`)."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.colour = console.is_terminal and not console.no_color and console.color_system is not None

    def _style(self, style: str) -> str:
        return style if self.colour else ""

    def _rate(self, tally: Tally) -> Text:
        style = "green" if tally.passed == tally.total else "red" if tally.passed == 0 else "yellow"
        return Text(f"{100 * tally.rate:5.1f}%", style=self._style(style))

    def _table(self, title: str, rows: dict[str, Tally]) -> None:
        table = Table(title=None, box=None, pad_edge=False, show_edge=False, header_style=self._style("bold"))
        table.add_column(title, overflow="fold")
        table.add_column("passed", justify="right")
        table.add_column("of", justify="right")
        table.add_column("rate", justify="right")
        for name, tally in rows.items():
            table.add_row(Text(_flat(name, 80)), str(tally.passed), str(tally.total), self._rate(tally))
        self.console.print(table)

    def show(self, rates: PassRates) -> None:
        if not rates.records.total:
            self.console.print(Text(f"no checks graded ({rates.ungraded} records without checks)"))
            return
        if len(rates.by_variant) > 1 or "(all)" not in rates.by_variant:
            self._table("variant", rates.by_variant)
            self.console.print()
        self._table("check", rates.by_check)
        if rates.failures:
            self.console.print()
            self.console.print(Text("failures", style=self._style("bold red")))
        for failure in rates.failures[:MAX_FAILURES]:
            self._failure(failure.record, failure.failed)
        more = len(rates.failures) - MAX_FAILURES
        if more > 0:
            self.console.print(Text(f"… and {more} more (the records hold every verdict)"))
        self.console.print(Text(rates.one_line(), style=self._style("bold")), soft_wrap=True)

    def _failure(self, record: dict[str, Any], failed: list[dict[str, Any]]) -> None:
        where = [f"prompt {record.get('prompt_index')}"]
        if record.get("variant"):
            where.append(f"variant {record.get('variant')}")
        where.append(f"seed {record.get('seed')}")
        head = Text(" · ".join(safe(str(w)) for w in where) + f": {_flat(record.get('prompt', ''))}")
        self.console.print(head, soft_wrap=True)
        for v in failed:
            line = Text("  ✗ ", style=self._style("red"))
            line.append(_flat(v.get("name"), 60), style=self._style("bold"))
            line.append(f": {_flat(v.get('detail', ''), 120)}")
            self.console.print(line, soft_wrap=True)
        answer = Text(f"  answer: {_flat(record.get('answer', ''), 100)}", style=self._style("dim"))
        self.console.print(answer, soft_wrap=True)


def verdict_lines(verdicts: list[dict[str, Any]], colour: bool) -> list[Text]:
    """`:check`'s lines: one per check (✓ or ✗, its name and detail), then how many passed."""
    lines = []
    for v in verdicts:
        ok = bool(v.get("pass"))
        line = Text("✓ " if ok else "✗ ", style=("green" if ok else "red") if colour else "")
        line.append(_flat(v.get("name"), 60), style="bold" if colour else "")
        line.append(f": {_flat(v.get('detail', ''), 160)}")
        lines.append(line)
    passed = sum(bool(v.get("pass")) for v in verdicts)
    lines.append(Text(f"{passed} of {len(verdicts)} checks passed"))
    return lines
