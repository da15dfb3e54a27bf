"""`qwenchat report RESULTS.jsonl`: a batch's results as one self-contained HTML page (model.py what it
shows, markdown.py answers as safe HTML, page.py the page, static.py its style sheet and script)."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from qwenchat.batch.inputs import BatchError
from qwenchat.batch.records import read_records
from qwenchat.report.model import build
from qwenchat.report.page import render_page


@dataclass
class Written:
    path: Path
    records: int
    torn: bool  # the results file's last line was cut by a killed write: left out


def default_output(results: str | Path) -> Path:
    """RESULTS with .html for its extension."""
    return Path(results).with_suffix(".html")


def write_report(results: str | Path, output: str | Path | None = None) -> Written:
    """Read `results`, write the page to `output` (whole or not at all); BatchError (one line) for a
    results file that cannot be read or a page that cannot be written."""
    out = Path(output) if output is not None else default_output(results)
    if out.exists() and out.resolve() == Path(results).resolve():
        raise BatchError(f"{out}: is the results file itself; name another with -o")
    records, torn = read_records(results)
    if not records:
        raise BatchError(f"{results}: no records in it")
    page = render_page(build(records, Path(results).name))
    data = page.encode("utf-8", errors="replace")  # a lone surrogate from a record cannot stop the page
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", dir=out.parent if str(out.parent) else ".")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.chmod(tmp, 0o644)
            os.replace(tmp, out)
        except BaseException:
            os.unlink(tmp)
            raise
    except OSError as exc:
        raise BatchError(f"{out}: cannot write it ({exc.strerror or exc})") from None
    return Written(out, len(records), torn)
