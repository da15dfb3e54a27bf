"""What a batch run shows: a progress bar with ETA on stderr (rich.progress), and the diff report.
Every text from a prompt file, a model or a results file goes through visible_controls on its way here."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from qwenchat.text.visible import visible_controls as safe
from qwenchat.text.worddiff import word_diff

if TYPE_CHECKING:
    from qwenchat.batch.diff import DiffReport, Pair
    from qwenchat.batch.plan import Run

CONTEXT_WORDS = 8  # unchanged words shown around a change; longer unchanged runs are elided
PREVIEW_CHARS = 72


class ProgressBar:
    """The batch's progress on a terminal: runs done of all, elapsed, ETA, and the run going on. Nothing on
    a pipe or file (the summary line says it all)."""

    def __init__(self, console: Console) -> None:
        self._progress = Progress(
            TextColumn("[bold]batch[/]"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            TextColumn("{task.fields[verdicts]}", markup=False),
            TextColumn("{task.description}", markup=False),
            console=console,
            transient=True,
            disable=not console.is_terminal,
        )
        self._task: Any = None
        self.passed = 0  # records whose checks all passed, in this run
        self.failed = 0

    def start(self, total: int, done: int) -> None:
        self._progress.start()
        self._task = self._progress.add_task("", total=total, completed=done, verdicts="")

    def running(self, run: Run) -> None:
        preview = " ".join(safe(run.messages[-1]["content"]).split())[:40]
        self._progress.update(self._task, description=f"{run.id} {preview}")

    def finished(self, run: Run, record: dict[str, Any] | None) -> None:
        if record is not None and "passed" in record:
            if record["passed"]:
                self.passed += 1
            else:
                self.failed += 1
            self._progress.update(self._task, verdicts=f"✓{self.passed} ✗{self.failed}")
        self._progress.advance(self._task)

    def stop(self) -> None:
        self._progress.stop()


def _describe(record: dict[str, Any]) -> str:
    parts = [f"prompt {record.get('prompt_index')}"]
    if record.get("vars_index") is not None:
        parts.append(f"vars row {record.get('vars_index')}")
    overrides = record.get("variant_overrides") or {}
    if overrides:
        label = record.get("variant") or "?"
        parts.append(f"variant {label} " + " ".join(f"{k}={v}" for k, v in overrides.items()))
    parts.append(f"seed {record.get('seed')}")
    return " · ".join(safe(str(p)) for p in parts)


def _preview(text: str) -> str:
    flat = " ".join(safe(text).split())
    return flat if len(flat) <= PREVIEW_CHARS else flat[: PREVIEW_CHARS - 1] + "…"


class DiffView:
    """`qwenchat diff`'s report on stdout: colours on a colour terminal, `[-old-]{+new+}` marks otherwise."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.colour = console.is_terminal and not console.no_color and console.color_system is not None

    def _line(self, text: Text | str) -> None:
        self.console.print(text if isinstance(text, Text) else Text(text), soft_wrap=True)

    def show(self, report: DiffReport) -> None:
        for title, pairs, style in (
            ("passed -> failed", report.now_failing, "bold red"),
            ("failed -> passed", report.now_passing, "bold green"),
        ):
            for pair in pairs:
                self._verdicts(title, pair, style)
        if report.now_failing or report.now_passing:
            self._line("")
        for pair in report.changed:
            self._pair(pair)
        for title, records in (("only in old", report.only_old), ("only in new", report.only_new)):
            for r in records:
                self._line(Text(f"{title}: {_describe(r)}: {_preview(str(r.get('prompt', '')))}"))
        self._line(Text(report.one_line(), style="bold" if self.colour else ""))

    def _verdicts(self, title: str, pair: Pair, style: str) -> None:
        self._line(Text(f"{title}: {_describe(pair.new)}", style=style if self.colour else ""))
        self._line(f"  prompt: {_preview(str(pair.new.get('prompt', '')))}")
        mark = {True: "pass", False: "fail", None: "-"}
        for name, before, now in pair.checks_changed():
            detail = next(
                (str(v.get("detail", "")) for v in pair.new.get("checks") or [] if v.get("name") == name), ""
            )
            line = f"  {safe(name)}: {mark[before]} -> {mark[now]}"
            self._line(line + (f" ({_preview(detail)})" if detail and now is False else ""))

    def _pair(self, pair: Pair) -> None:
        head = Text(f"changed: {_describe(pair.new)}", style="bold yellow" if self.colour else "")
        self._line(head)
        self._line(f"  prompt: {_preview(str(pair.new.get('prompt', '')))}")
        if pair.prompt_changed:
            self._line("  (the prompt or system prompt changed too)")
        self._line(f"  {safe(pair.summary.one_line())}")
        self._line(self._words(str(pair.old.get("answer", "")), str(pair.new.get("answer", ""))))
        self._line("")

    def _words(self, a: str, b: str) -> Text:
        pieces = word_diff(a, b)
        out = Text("  ")
        for i, (op, words) in enumerate(pieces):
            words = safe(words)
            if op == "equal":
                w = words.split(" ")
                if len(w) > 2 * CONTEXT_WORDS:
                    head = w[:CONTEXT_WORDS] if i > 0 else []
                    tail = w[-CONTEXT_WORDS:] if i < len(pieces) - 1 else []
                    elided = len(w) - len(head) - len(tail)
                    words = " ".join([*head, f"…({elided} words)…", *tail])
                out.append(words + " ")
            elif self.colour:
                out.append(words, style="red strike" if op == "delete" else "green")
                out.append(" ")
            else:
                out.append(f"[-{words}-] " if op == "delete" else f"{{+{words}+}} ")
        return out
