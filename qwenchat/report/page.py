"""The report as one self-contained HTML page: the run's facts and settings, the pass rates, the failures,
then the prompt x variant matrix. Every text from a record goes through `escape` or the markdown renderer
(markdown.py), never into markup as it is; the page's Content-Security-Policy lets only its own inline style
sheet and script run (by their hashes) and fetches nothing, so even a mistake here could not run a model's
script or call out."""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import datetime, timezone
from typing import Any

from qwenchat import __version__
from qwenchat.report.markdown import escape, render
from qwenchat.report.model import Rate, Report, Row, checks_of, verdict
from qwenchat.report.static import CSS, JS
from qwenchat.text.think import split_think
from qwenchat.text.worddiff import word_diff, words

EXCERPT_CHARS = 160
MAX_FAILURES = 200  # listed at the top; the matrix ("failures only") shows them all
SHOWN_FIELDS = {  # record fields the matrix shows itself; the rest are under "more"
    "key", "id", "prompt_index", "vars_index", "variant", "variant_overrides", "seed", "prompt", "system",
    "messages", "answer", "finish_reason", "error", "tokens", "ttft_s", "tok_s", "total_s", "checks",
    "passed", "ref_logprob", "ref_ppl", "reference", "json_valid", "json_check", "finished_at",
}  # fmt: skip


def _hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode() + "'"


def policy() -> str:
    """Nothing fetched, nothing run but this page's own style sheet and script."""
    return (
        f"default-src 'none'; style-src {_hash(CSS)}; script-src {_hash(JS)}; "
        "img-src 'none'; base-uri 'none'; form-action 'none'"
    )


def _rate(rate: Rate | None) -> str:
    if rate is None or not rate.total:
        return '<td class="rate">—</td>'
    fraction = rate.passed / rate.total
    kind = "good" if rate.passed == rate.total else "bad" if rate.passed == 0 else "mixed"
    return f'<td class="rate {kind}">{rate.passed}/{rate.total} ({fraction:.0%})</td>'


def _overrides(overrides: dict[str, Any]) -> str:
    return " ".join(f"{escape(k)}={escape(v)}" for k, v in overrides.items())


def _value(value: Any) -> str:
    if isinstance(value, str):
        return escape(value)
    return escape(json.dumps(value, ensure_ascii=False, default=str))


def _settings(settings: dict[str, Any]) -> str:
    return ", ".join(f'<span class="mono">{escape(k)}={_value(v)}</span>' for k, v in settings.items())


def _run(report: Report) -> str:
    shared = report.shared
    rows = [("records", str(len(report.records)))]
    for key in ("model", "engine", "adapter", "qwenchat_version", "finished"):
        if key in shared:
            rows.append((key.replace("_", " "), escape(shared[key])))
    seeds = ", ".join(escape(s) for s in report.seeds)
    rows.append(("seeds", f'<span class="mono">{seeds}</span>'))
    if "settings" in shared:
        rows.append(("settings", _settings(shared["settings"])))
    if "system" in shared:
        rows.append(("system prompt", f"<pre>{escape(shared['system'])}</pre>"))
    facts = "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in rows)
    has_ref = any(v.mean_ref_logprob is not None for v in report.variants)
    head = "<tr><th>variant</th><th>overrides</th><th>records</th><th>passed</th>"
    head += "<th>mean reference log-prob</th></tr>" if has_ref else "</tr>"
    body = []
    for v in report.variants:
        cells = (
            f'<td class="label">{escape(v.title)}</td><td class="mono">{_overrides(v.overrides)}</td>'
            f"<td>{v.records}</td>{_rate(v.rate)}"
        )
        if has_ref:
            mean = v.mean_ref_logprob
            cells += f"<td>{'—' if mean is None else f'{mean:.3f}'}</td>"
        body.append(f"<tr>{cells}</tr>")
    return (
        f'<section id="run"><h2>The run</h2><table class="facts">{facts}</table>'
        f'<h3>Variants</h3><table class="variants">{head}{"".join(body)}</table></section>'
    )


def _rates(report: Report) -> str:
    if not any(v.rate.total for v in report.variants):
        return ""
    labels = [v.label for v in report.variants]
    head = "<tr><th>check</th>" + "".join(f"<th>{escape(v.title)}</th>" for v in report.variants) + "</tr>"
    rows = [
        '<tr class="all"><th>every check</th>' + "".join(_rate(v.rate) for v in report.variants) + "</tr>"
    ]
    for name, by_variant in report.check_rates.items():
        rows.append(
            f"<tr><th>{escape(name)}</th>" + "".join(_rate(by_variant.get(x)) for x in labels) + "</tr>"
        )
    return (
        f'<section id="rates"><h2>Pass rates</h2><table class="rates">{head}{"".join(rows)}</table></section>'
    )


def _excerpt(text: str) -> str:
    flat = " ".join(str(text).split())
    return escape(flat if len(flat) <= EXCERPT_CHARS else flat[: EXCERPT_CHARS - 1] + "…")


def _failures(report: Report, anchors: dict[int, str]) -> str:
    items = []
    for r in report.records:
        if verdict(r) is not False:
            continue
        failed = [c for c in checks_of(r) if c.get("pass") is not True]
        what = "; ".join(f"{escape(c['name'])}: {_excerpt(c.get('detail', ''))}" for c in failed)
        if not failed and r.get("json_valid") is False:
            what = f"json_valid: {_excerpt(r.get('json_check', ''))}"
        variant = f"variant {escape(r.get('variant'))}, " if r.get("variant") else ""
        items.append(
            f'<li><a href="#{anchors[id(r)]}">{escape(r.get("id", "?"))}</a> ({variant}seed '
            f"{escape(r.get('seed'))}): {what or 'failed'} — <q>{_excerpt(r.get('prompt', ''))}</q>: "
            f"<q>{_excerpt(r.get('answer', ''))}</q></li>"
        )
    if not items:
        return ""
    more = len(items) - MAX_FAILURES
    tail = f'<p class="meta">and {more} more: tick "failures only" below</p>' if more > 0 else ""
    listed = "".join(items[:MAX_FAILURES])
    return f'<section id="failures"><h2>Failures</h2><ol class="failures">{listed}</ol>{tail}</section>'


def _answer(text: str) -> str:
    think, answer = split_think(text)
    parts = []
    if think is not None:
        n_words = len(think.split())
        parts.append(
            f'<details class="think"><summary>thinking ({n_words} words)</summary>'
            f'<div class="md">{render(think)}</div></details>'
        )
    parts.append(f'<div class="md answer">{render(answer)}</div>' if answer.strip() else "")
    return "".join(parts) or '<p class="empty">(empty answer)</p>'


def _check(c: dict[str, Any]) -> str:
    ok = c.get("pass") is True
    detail = f" {escape(c['detail'])}" if c.get("detail") not in (None, "") else ""
    judge = c.get("judge")
    extra = ""
    if isinstance(judge, dict):
        extra = (
            '<details class="judge"><summary>the judge\'s prompt and answer</summary>'
            f"<pre>{escape(judge.get('prompt', ''))}</pre>"
            f"<pre>{escape(judge.get('answer', ''))}</pre></details>"
        )
    return f'<li class="{"pass" if ok else "fail"}"><b>{escape(c["name"])}</b>{detail}{extra}</li>'


def _meta(r: dict[str, Any]) -> str:
    parts = [f"seed {escape(r.get('seed'))}"]
    ok = verdict(r)
    if r.get("finish_reason") == "error":
        parts.append('<span class="verdict error">error</span>')
    elif ok is not None:
        parts.append(f'<span class="verdict {"pass" if ok else "fail"}">{"pass" if ok else "fail"}</span>')
    else:
        parts.append('<span class="verdict none">unchecked</span>')
    if r.get("finish_reason"):
        parts.append(escape(r["finish_reason"]))
    tokens = r.get("tokens") if isinstance(r.get("tokens"), dict) else {}
    if tokens.get("generated") is not None:
        parts.append(f"{escape(tokens['generated'])} tokens")
    if r.get("total_s") is not None:
        parts.append(f"{escape(r['total_s'])} s")
    return " · ".join(parts)


def _record(r: dict[str, Any], report: Report, anchor: str, base: str | None) -> str:
    ok = verdict(r)
    kind = "error" if r.get("finish_reason") == "error" else {True: "pass", False: "fail", None: "none"}[ok]
    body = [f"<header>{_meta(r)}</header>"]
    own = r.get("settings") if isinstance(r.get("settings"), dict) else {}
    shared_settings = report.shared.get("settings", {})
    overrides = r.get("variant_overrides") if isinstance(r.get("variant_overrides"), dict) else {}
    # A prompt's own settings; the variant's are in the column's head.
    differ = {k: v for k, v in own.items() if shared_settings.get(k, object()) != v and k not in overrides}
    if differ:
        body.append(f'<p class="meta">settings: {_settings(differ)}</p>')
    if r.get("error"):
        body.append(f'<p class="error-text">{escape(r["error"])}</p>')
    body.append(_answer(str(r.get("answer", ""))))
    checks = checks_of(r)
    if checks:
        body.append(f'<ul class="checks">{"".join(_check(c) for c in checks)}</ul>')
    elif isinstance(r.get("json_valid"), bool):
        check = {"name": "json_valid", "pass": r["json_valid"], "detail": r.get("json_check")}
        body.append(f'<ul class="checks">{_check(check)}</ul>')
    names = (("ref_logprob", "log-prob"), ("ref_ppl", "perplexity"))
    refs = [f"{name} {escape(r[key])}" for key, name in names if r.get(key) is not None]
    if isinstance(r.get("reference"), str):
        text = _answer(r["reference"])
        body.append(f'<details class="reference"><summary>reference answer</summary>{text}</details>')
    if refs:
        body.append(f'<p class="meta ref">reference answer: {" · ".join(refs)}</p>')
    other = report.counterpart(r)
    if other is not None and base is not None:
        a, b = str(other.get("answer", "")), str(r.get("answer", ""))
        pieces = word_diff(a, b)
        diff = "".join(
            escape(text) + " " if op == "equal" else f"<{op[:3]}>{escape(text)}</{op[:3]}> "
            for op, text in pieces
        )
        body.append(
            f'<div class="diffbar meta">{escape(_diff_line(a, b, pieces))} '
            f'<button type="button" class="diff-toggle" aria-controls="{anchor}-diff" aria-expanded="false" '
            f'data-base="{escape(base)}">diff vs {escape(base)}</button></div>'
            f'<div class="diff" id="{anchor}-diff" hidden>{diff.strip() or "(both empty)"}</div>'
        )
    more = {k: v for k, v in r.items() if k not in SHOWN_FIELDS}
    if more:
        text = json.dumps(more, indent=1, ensure_ascii=False, default=str)
        body.append(f'<details class="more"><summary>more</summary><pre>{escape(text)}</pre></details>')
    return (
        f'<article class="record {kind}" id="{anchor}" data-key="{escape(r.get("key", ""))}">'
        f"{''.join(body)}</article>"
    )


def _diff_line(a: str, b: str, pieces: list[tuple[str, str]]) -> str:
    """How B's answer differs from A's, from the one word diff already made (difflib is the page's cost)."""
    if a == b:
        return "identical"
    total = len(words(a)) + len(words(b))
    same = sum(len(text.split(" ")) for op, text in pieces if op == "equal")
    if 2 * same == total:
        return "same words, different whitespace"
    first = len(pieces[0][1].split(" ")) if pieces and pieces[0][0] == "equal" else 0
    return f"differs from A's from word {first + 1} ({2 * same / total:.0%} similar)"


def _prompt_cell(row: Row) -> str:
    index, vars_index = row.key
    where = f"prompt {escape(index)}" + (f", vars row {escape(vars_index)}" if vars_index is not None else "")
    earlier = ""
    for m in row.messages[:-1]:
        if isinstance(m, dict):
            role, content = escape(m.get("role", "?")), escape(m.get("content", ""))
            earlier += f'<div class="earlier"><b>{role}:</b> {content}</div>'
    return (
        f'<th class="prompt" scope="row"><div class="meta">{where}</div>{earlier}'
        f'<div class="prompt-text">{escape(row.prompt)}</div></th>'
    )


def _matrix(report: Report, anchors: dict[int, str]) -> str:
    head = "<tr><th>prompt</th>" + "".join(
        f'<th><span class="label">{escape(v.title)}</span> '
        f'<span class="overrides">{_overrides(v.overrides)}</span></th>'
        for v in report.variants
    )
    base = report.baseline
    rows = []
    for row in report.rows:
        cells = []
        failing = False
        for v in report.variants:
            records = row.cells.get(v.label, [])
            failing = failing or any(
                verdict(r) is False or r.get("finish_reason") == "error" for r in records
            )
            inner = "".join(_record(r, report, anchors[id(r)], base) for r in records)
            cells.append(f'<td class="cell">{inner or "<p class=empty>no record</p>"}</td>')
        cls = "row has-failure" if failing else "row"
        rows.append(f'<tr class="{cls}">{_prompt_cell(row)}{"".join(cells)}</tr>')
    controls = ['<label><input type="checkbox" id="failures-only"> failures only</label>']
    if base is not None:
        controls.insert(
            0, '<button type="button" id="all-diffs" aria-pressed="false">show every diff</button>'
        )
    controls.append('<button type="button" id="open-think" aria-pressed="false">unfold thinking</button>')
    return (
        f'<section id="answers"><h2>Answers</h2><div class="controls">{" ".join(controls)}</div>'
        f'<table class="matrix"><thead>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table></section>'
    )


def render_page(report: Report) -> str:
    """The whole page, as text (UTF-8 when written)."""
    anchors = {id(r): f"r{n}" for n, r in enumerate(report.records, 1)}
    made = datetime.now(timezone.utc).isoformat(timespec="seconds")
    notes = "".join(f'<p class="meta">{escape(n)}</p>' for n in report.notes)
    count = f"{len(report.records)} record{'' if len(report.records) == 1 else 's'}"
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{policy()}">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>qwenchat report: {escape(report.title)}</title>\n"
        f"<style>{CSS}</style></head>\n"
        f"<body><header><h1>qwenchat report</h1>"
        f'<p class="source"><span class="mono">{escape(report.title)}</span> · {count}'
        f" · made {made} by qwenchat {escape(__version__)}</p>{notes}</header>\n"
        f"{_run(report)}\n{_rates(report)}\n{_failures(report, anchors)}\n{_matrix(report, anchors)}\n"
        f"<script>{JS}</script></body></html>\n"
    )
