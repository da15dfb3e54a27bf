"""The report's own style sheet and script, inlined into the page (no file beside it, nothing fetched).
The page's Content-Security-Policy allows these two by their hashes and nothing else (page.py), so the
script uses no inline handlers and the markup no style attributes."""

CSS = """
:root { --pass: #1a7f37; --pass-bg: #dafbe1; --fail: #cf222e; --fail-bg: #ffebe9; --none: #57606a;
  --none-bg: #f6f8fa; --warn: #9a6700; --warn-bg: #fff8c5; --line: #d0d7de; --ins: #ccffd8; --del: #ffd7d5; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0 1.5em 3em;
  color: #1f2328; }
h1 { font-size: 1.5em; margin: 0.8em 0 0.1em; } h2 { font-size: 1.2em; margin-top: 1.6em; }
.source { color: var(--none); margin: 0; }
table { border-collapse: collapse; }
th, td { border: 1px solid var(--line); padding: 0.3em 0.6em; vertical-align: top; text-align: left; }
table.facts th { background: var(--none-bg); font-weight: 600; }
.rate { white-space: nowrap; font-variant-numeric: tabular-nums; }
.rate.good { background: var(--pass-bg); } .rate.bad { background: var(--fail-bg); }
.rate.mixed { background: var(--warn-bg); }
code, pre, .mono { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 0.92em; }
pre { white-space: pre-wrap; overflow-wrap: anywhere; background: var(--none-bg); padding: 0.5em;
  border-radius: 4px; margin: 0.4em 0; }
.controls { position: sticky; top: 0; background: #fff; padding: 0.5em 0; z-index: 2;
  border-bottom: 1px solid var(--line); }
.controls button, .diff-toggle { font: inherit; padding: 0.15em 0.6em; cursor: pointer; }
table.matrix { width: 100%; table-layout: fixed; }
table.matrix thead th { position: sticky; top: 2.6em; background: var(--none-bg); z-index: 1; }
table.matrix th.prompt { width: 22%; font-weight: normal; }
.prompt-text { white-space: pre-wrap; overflow-wrap: anywhere; }
.earlier { color: var(--none); white-space: pre-wrap; overflow-wrap: anywhere; font-size: 0.9em; }
.label { font-weight: 600; } .overrides { color: var(--none); font-weight: normal; }
.record { border-left: 4px solid var(--none); padding: 0.2em 0 0.2em 0.6em; margin: 0 0 0.8em; }
.record.pass { border-color: var(--pass); } .record.fail { border-color: var(--fail); }
.record.error { border-color: var(--warn); }
.record > header { color: var(--none); font-size: 0.9em; }
.verdict { display: inline-block; padding: 0 0.45em; border-radius: 3px; font-weight: 600; }
.verdict.pass { color: var(--pass); background: var(--pass-bg); }
.verdict.fail { color: var(--fail); background: var(--fail-bg); }
.verdict.none { color: var(--none); background: var(--none-bg); }
.verdict.error { color: var(--warn); background: var(--warn-bg); }
.answer { overflow-wrap: anywhere; } .answer table { margin: 0.4em 0; }
.align-left { text-align: left; } .align-center { text-align: center; } .align-right { text-align: right; }
details.think { color: var(--none); border-left: 2px dotted var(--line); padding-left: 0.5em; }
details summary { cursor: pointer; color: var(--none); }
ul.checks { list-style: none; padding: 0; margin: 0.3em 0; }
ul.checks li { margin: 0.1em 0; overflow-wrap: anywhere; }
ul.checks li.pass::before { content: "\\2713  "; color: var(--pass); font-weight: 700; }
ul.checks li.fail::before { content: "\\2717  "; color: var(--fail); font-weight: 700; }
.meta { color: var(--none); font-size: 0.9em; margin: 0.2em 0; }
.diff { border: 1px dashed var(--line); padding: 0.4em; margin: 0.3em 0; overflow-wrap: anywhere; }
ins { background: var(--ins); text-decoration: none; } del { background: var(--del); }
.error-text { color: var(--warn); }
.empty { color: var(--none); font-style: italic; }
body.failures-only tr.row:not(.has-failure),
body.failures-only .record:not(.fail):not(.error) { display: none; }
ol.failures li { margin: 0.2em 0; overflow-wrap: anywhere; }
"""

JS = """
(function () {
  "use strict";
  function setDiff(button, open) {
    var target = document.getElementById(button.getAttribute("aria-controls"));
    if (!target) { return; }
    target.hidden = !open;
    button.setAttribute("aria-expanded", open ? "true" : "false");
    button.textContent = open ? "hide diff" : "diff vs " + button.dataset.base;
  }
  var toggles = Array.prototype.slice.call(document.querySelectorAll("button.diff-toggle"));
  toggles.forEach(function (b) {
    b.addEventListener("click", function () { setDiff(b, b.getAttribute("aria-expanded") !== "true"); });
  });
  var all = document.getElementById("all-diffs");
  if (all) {
    all.addEventListener("click", function () {
      var open = all.getAttribute("aria-pressed") !== "true";
      all.setAttribute("aria-pressed", open ? "true" : "false");
      all.textContent = open ? "hide every diff" : "show every diff";
      toggles.forEach(function (b) { setDiff(b, open); });
    });
  }
  var failures = document.getElementById("failures-only");
  if (failures) {
    failures.addEventListener("change", function () {
      document.body.classList.toggle("failures-only", failures.checked);
    });
  }
  var think = document.getElementById("open-think");
  if (think) {
    think.addEventListener("click", function () {
      var open = think.getAttribute("aria-pressed") !== "true";
      think.setAttribute("aria-pressed", open ? "true" : "false");
      think.textContent = open ? "fold thinking" : "unfold thinking";
      document.querySelectorAll("details.think").forEach(function (d) { d.open = open; });
    });
  }
  document.body.dataset.ready = "true";
})();
"""
