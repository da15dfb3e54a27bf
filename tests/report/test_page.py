"""The report page read back with an HTML parser: nothing from a record becomes markup (a corpus of hostile
answers, prompts, check names, labels and keys), the page fetches and runs nothing but its own style sheet
and script, answers are rendered markdown with thinking folded, rates and diffs are the records'."""

from __future__ import annotations

import re
from html.parser import HTMLParser

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qwenchat.report.markdown import render
from qwenchat.report.model import build, verdict
from qwenchat.report.page import policy, render_page
from qwenchat.report.static import CSS, JS
from qwenchat.text.visible import visible_controls
from tests.report.records import HOSTILE, hostile_records, record

ALLOWED_TAGS = {
    "html", "head", "meta", "title", "style", "body", "header", "h1", "h2", "h3", "p", "span", "section",
    "table", "thead", "tbody", "tr", "th", "td", "div", "details", "summary", "pre", "code", "ul", "ol", "li",
    "b", "q", "a", "article", "button", "label", "input", "del", "ins", "strong", "em", "s", "br", "hr",
    "blockquote", "script", "h4", "h5", "h6",
}  # fmt: skip


class Page(HTMLParser):
    """Tags, attributes, text and the raw content of script and style elements."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.raw: dict[str, list[str]] = {"script": [], "style": []}
        self._in: str | None = None
        self.feed(html)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        if tag in self.raw:
            self._in = tag
            self.raw[tag].append("")

    def handle_endtag(self, tag: str) -> None:
        if tag == self._in:
            self._in = None

    def handle_data(self, data: str) -> None:
        if self._in:
            self.raw[self._in][-1] += data
        else:
            self.text.append(data)

    def count(self, tag: str, **attrs: str) -> int:
        return sum(t == tag and all(a.get(k) == v for k, v in attrs.items()) for t, a in self.tags)

    def with_class(self, cls: str) -> list[dict[str, str | None]]:
        return [a for _, a in self.tags if cls in (a.get("class") or "").split()]


def test_hostile_records_never_become_markup():
    records = hostile_records()
    html = render_page(build(records, 'r<script>"x".jsonl'))
    page = Page(html)
    assert {t for t, _ in page.tags} <= ALLOWED_TAGS
    assert page.raw == {"script": [JS], "style": [CSS]}  # the page's own, and nothing else
    for tag, attrs in page.tags:
        assert not any(name.startswith("on") for name in attrs), (tag, attrs)
        assert "style" not in attrs and "src" not in attrs and "srcdoc" not in attrs, (tag, attrs)
        assert not (attrs.get("href") or "").lower().startswith(("javascript:", "data:", "vbscript:"))
        assert attrs.get("id") != "injected"
    metas = [a for t, a in page.tags if t == "meta"]
    assert [m.get("http-equiv") for m in metas].count("Content-Security-Policy") == 1
    # Every record drawn once, keys intact (quotes and brackets included).
    assert [a["data-key"] for a in page.with_class("record")] == [visible_controls(r["key"]) for r in records]
    text = "".join(page.text)
    for r in records:
        assert visible_controls(r["prompt"]) in text
        assert visible_controls(r["system"]) in text
    # Nothing a terminal or a parser could take as a control: the control characters are shown as pictures.
    assert not re.search("[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff]", html)
    assert "\u241b]0;title\u2407" in text  # ESC ] 0 ; title BEL, made visible


def test_each_hostile_answer_alone_is_text():
    for text in HOSTILE:
        page = Page(render(text))
        assert {t for t, _ in page.tags} <= ALLOWED_TAGS - {"script", "style", "meta", "input", "button"}
        assert not any(k.startswith("on") or k in ("src", "style") for _, a in page.tags for k in a)


def test_markdown_is_rendered_and_thinking_folded():
    answer = (
        "<think>Let me see: 6 x 7.</think>\n\nIt is **42**.\n\n"
        "| n | sq |\n|--:|---|\n| 2 | 4 |\n\n```py\nx = 1\n```"
    )
    page = Page(render_page(build([record(1, "", 1, answer)], "r.jsonl")))
    thinks = page.with_class("think")
    assert len(thinks) == 1 and page.count("details", **{"class": "think"}) == 1
    assert (
        page.count("strong") == 1
        and page.count("table") >= 1
        and page.count("code", **{"class": "language-py"})
    )
    assert any("align-right" == a.get("class") for _, a in page.tags)  # a column's alignment as a class
    html = render_page(build([record(1, "", 1, answer)], "r.jsonl"))
    think_at, answer_at = html.index("Let me see"), html.index('class="md answer"')
    assert think_at < answer_at  # the thinking is inside the fold, before the answer


def test_links_open_without_a_referrer_and_images_are_not_fetched():
    page = Page(render("[docs](https://example.org/x) ![pic](https://example.org/p.png)"))
    links = [a for t, a in page.tags if t == "a"]
    assert all(a["rel"] == "noopener noreferrer nofollow" for a in links) and page.count("img") == 0


def test_the_policy_allows_the_page_s_own_style_and_script_only():
    import base64
    import hashlib

    csp = policy()
    for text in (CSS, JS):
        digest = base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()
        assert f"'sha256-{digest}'" in csp
    assert "default-src 'none'" in csp and "unsafe" not in csp


def test_pass_rates_per_variant_and_per_check():
    records = hostile_records()
    report = build(records, "r.jsonl")
    for v in report.variants:
        mine = [r for r in records if r["variant"] == v.label]
        assert v.rate.total == len(mine) and v.rate.passed == sum(verdict(r) is True for r in mine)
    contains = report.check_rates["contains"]
    assert (contains["A"].passed, contains["A"].total) == (len(HOSTILE), len(HOSTILE))
    assert (contains["B"].passed, contains["B"].total) == (0, len(HOSTILE))
    judge = report.check_rates["judge"]["A"]
    assert judge.passed == sum(n % 2 == 0 for n in range(1, len(HOSTILE) + 1))
    html = render_page(report)
    assert f"0/{len(HOSTILE)} (0%)" in html and f"{len(HOSTILE)}/{len(HOSTILE)} (100%)" in html
    for v in report.variants:
        assert f"{v.mean_ref_logprob:.3f}" in html


def test_verdicts_from_checks_passed_or_the_json_schema():
    assert verdict(record(1, "", 1, "x", passed=False, checks=[{"name": "a", "pass": True}])) is False
    assert (
        verdict(record(1, "", 1, "x", checks=[{"name": "a", "pass": True}, {"name": "b", "pass": False}]))
        is False
    )
    assert verdict(record(1, "", 1, "x", json_valid=True, json_check="valid")) is True
    assert verdict(record(1, "", 1, "x")) is None


def test_diff_against_variant_a_for_the_same_prompt_and_seed():
    records = [
        record(1, "A", 1, "the cat sat on the mat"),
        record(1, "A", 2, "a dog ran"),
        record(1, "B", 1, "the cat lay on the mat"),
        record(1, "B", 2, "a dog ran"),
        record(2, "B", 1, "no A for this one"),
    ]
    report = build(records, "r.jsonl")
    assert report.counterpart(records[2]) is records[0] and report.counterpart(records[3]) is records[1]
    assert report.counterpart(records[0]) is None and report.counterpart(records[4]) is None
    page = Page(render_page(report))
    diffs = page.with_class("diff")
    assert len(diffs) == 2 and all("hidden" in d for d in diffs)  # shown on demand
    assert len(page.with_class("diff-toggle")) == 2 and page.count("button", id="all-diffs") == 1
    html = render_page(report)
    assert "<del>sat</del> <ins>lay</ins>" in html and "identical" in html
    assert "differs from A&#x27;s from word 3 (83% similar)" in html
    assert "no record" in html  # prompt 2 has no run in variant A

    alone = Page(render_page(build([record(1, "", 1, "x"), record(1, "", 2, "y")], "r.jsonl")))
    assert not alone.with_class("diff-toggle") and alone.count("button", id="all-diffs") == 0


def test_the_run_s_settings_and_seeds_are_shown():
    records = [record(1, "A", s, "x") for s in (3, 1, 2)] + [record(1, "B", 1, "y")]
    html = render_page(build(records, "r.jsonl"))
    text = "".join(Page(html).text)
    assert "1, 2, 3" in text and "max_new_tokens=64" in text and "You are a helpful assistant." in text
    assert "temperature=0" in text and "temperature=0.7" in text  # the variants' overrides
    seeds = [int(m) for m in re.findall(r"<header>seed (\d+)", html)]
    assert seeds[:3] == [1, 2, 3]  # a cell's records in seed order


def test_the_failures_list_is_capped_and_the_matrix_has_them_all():
    from qwenchat.report.page import MAX_FAILURES

    n = MAX_FAILURES + 5
    records = [record(i, "", 1, "no", checks=[{"name": "c", "pass": False}]) for i in range(1, n + 1)]
    page = Page(render_page(build(records, "r.jsonl")))
    assert len(page.with_class("failures")) == 1
    assert sum(t == "li" and not a for t, a in page.tags) == MAX_FAILURES  # the list's items have no class
    assert "and 5 more" in "".join(page.text) and len(page.with_class("record")) == n


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=6,
)
FIELDS = (
    "prompt_index", "vars_index", "variant", "variant_overrides", "seed", "prompt", "system", "messages",
    "settings", "answer", "finish_reason", "error", "tokens", "total_s", "checks", "passed", "ref_logprob",
    "ref_ppl", "reference", "json_valid", "json_check", "finished_at", "model",
)  # fmt: skip


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.dictionaries(st.sampled_from(FIELDS), JSON, max_size=8), min_size=1, max_size=4))
def test_any_record_values_draw_a_page_of_text(values):
    """A results file that passes the reader's check may hold anything in any field: the page is drawn,
    every record in it, and none of it becomes markup."""
    records = [{**record(n, "A", 1, "x"), **v, "key": f"k{n}"} for n, v in enumerate(values)]
    html = render_page(build(records, "r.jsonl"))
    page = Page(html)
    assert {t for t, _ in page.tags} <= ALLOWED_TAGS and page.raw["script"] == [JS]
    assert sorted(a["data-key"] for a in page.with_class("record")) == sorted(r["key"] for r in records)
    assert not re.search("[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff]", html)
