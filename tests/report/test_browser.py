"""The report in a real headless Chromium (Debian's `chromium`; .ci/run installs it where apt can): the page
loads without an error (an exception, a console error, a script or style sheet its policy blocked), runs its
script, shows every record, fetches nothing, and its buttons work: the word diff against variant A, every diff
at once, failures only, thinking unfolded. Skipped, saying why, where no Chromium is installed."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from qwenchat.report import write_report
from qwenchat.report.static import JS
from qwenchat.text.visible import visible_controls
from tests.report.records import hostile_records, record, write
from tests.support.browser import Browser, BrowserError, find_chromium

CHROMIUM = find_chromium()
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="needs Chromium: apt-get install chromium (.ci/run installs it)"
)


@pytest.fixture(scope="module")
def browser(tmp_path_factory) -> Iterator[Browser]:
    assert CHROMIUM is not None
    try:
        b = Browser(CHROMIUM, tmp_path_factory.mktemp("chromium-profile"))
    except BrowserError as exc:  # installed but cannot start here (no /dev/shm, a missing library, ...)
        pytest.skip(f"{CHROMIUM} does not start here: {exc}")
    yield b
    b.close()


def report_of(tmp_path: Path, records: list[dict]) -> Path:
    return write_report(write(tmp_path / "r.jsonl", records)).path


def test_the_hostile_report_loads_clean_and_shows_every_record(browser, tmp_path):
    records = hostile_records()
    page = report_of(tmp_path, records)
    browser.open(page)
    assert browser.errors() == []
    assert browser.eval("document.body.dataset.ready") == "true"  # the script ran: its hash is allowed
    assert browser.requests() == [page.resolve().as_uri()]  # nothing else fetched
    shown = browser.eval("Array.from(document.querySelectorAll('article.record')).map(a => a.dataset.key)")
    assert shown == [visible_controls(r["key"]) for r in records]
    visible = browser.eval(
        "Array.from(document.querySelectorAll('article.record')).filter(a => a.offsetParent !== null).length"
    )
    assert visible == len(records)
    # No answer ran or injected anything.
    assert browser.eval("typeof window.__pwned") == "undefined"
    assert browser.eval("document.querySelectorAll('script').length") == 1
    assert browser.eval("document.getElementById('injected')") is None
    assert browser.eval("document.querySelectorAll('img, iframe, object, embed, link, base').length") == 0
    # The style sheet applied (its hash is allowed): a passing verdict is green.
    assert (
        browser.eval("getComputedStyle(document.querySelector('.verdict.pass')).color") == "rgb(26, 127, 55)"
    )


def test_the_diff_toggles(browser, tmp_path):
    records = [
        record(1, "A", 1, "the cat sat on the mat"),
        record(1, "B", 1, "the cat lay on the mat"),
        record(2, "A", 1, "<think>hmm</think>\n\nyes", checks=[{"name": "c", "pass": True}]),
        record(2, "B", 1, "no", checks=[{"name": "c", "pass": False, "detail": "wanted yes"}]),
    ]
    browser.open(report_of(tmp_path, records))
    assert browser.errors() == []
    toggle = "document.querySelector('button.diff-toggle')"
    target = f"document.getElementById({toggle}.getAttribute('aria-controls'))"
    shown = f"{target}.offsetParent !== null"
    assert browser.eval(shown) is False
    browser.eval(f"{toggle}.click()")
    assert browser.eval(shown) is True and browser.eval(f"{toggle}.getAttribute('aria-expanded')") == "true"
    assert browser.eval(f"{target}.querySelector('del').textContent") == "sat"
    assert browser.eval(f"{target}.querySelector('ins').textContent") == "lay"
    browser.eval(f"{toggle}.click()")
    assert browser.eval(shown) is False and browser.eval(f"{toggle}.textContent") == "diff vs A"

    every = "Array.from(document.querySelectorAll('div.diff')).map(d => d.offsetParent !== null)"
    browser.eval("document.getElementById('all-diffs').click()")
    assert browser.eval(every) == [True, True]
    browser.eval("document.getElementById('all-diffs').click()")
    assert browser.eval(every) == [False, False]

    rows = "Array.from(document.querySelectorAll('tr.row')).map(r => r.offsetParent !== null)"
    browser.eval("const f = document.getElementById('failures-only'); f.click()")
    assert browser.eval(rows) == [False, True]  # only prompt 2 has a failure
    browser.eval("document.getElementById('failures-only').click()")
    assert browser.eval(rows) == [True, True]

    think = "document.querySelector('details.think').open"
    assert browser.eval(think) is False
    browser.eval("document.getElementById('open-think').click()")
    assert browser.eval(think) is True
    assert browser.errors() == []


def test_a_blocked_script_is_an_error_the_check_sees(browser, tmp_path):
    """The clean-load check is not vacuous: a script the page's policy does not allow is reported."""
    page = report_of(tmp_path, [record(1, "", 1, "x")])
    page.write_text(page.read_text().replace(JS, JS + "\n// changed"))
    browser.open(page)
    assert browser.eval("document.body.dataset.ready") is None
    assert any("Content Security Policy" in e for e in browser.errors()), browser.errors()
