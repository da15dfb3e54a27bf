"""`qwenchat report RESULTS.jsonl [-o report.html]`: 0 written, 2 for a results file that cannot be read
or a page that cannot be written (one line). A torn last line is one notice, and left out."""

from __future__ import annotations

from typing import TYPE_CHECKING

from qwenchat.cli.options import ReportOptions
from qwenchat.errors import UserError, first_line

if TYPE_CHECKING:
    from qwenchat.ui.render import Renderer


def report(options: ReportOptions, err: Renderer) -> int:
    from qwenchat.report import write_report

    try:
        written = write_report(options.results, options.output)
    except UserError as exc:
        err.error(first_line(exc))
        return 2
    if written.torn:
        err.notice(f"{options.results}: its last line was cut by a killed write; left out")
    n = written.records
    err.info(f"wrote {written.path} ({n} record{'' if n == 1 else 's'})")
    return 0
