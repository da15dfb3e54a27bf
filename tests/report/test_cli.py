"""`qwenchat report`: where the page goes, a torn results file (one notice, the rest reported), a bad one
(one line, exit 2, nothing written), and a report of a real batch run against the scripted server."""

from __future__ import annotations

import io
import json
from pathlib import Path

from qwenchat.cli.app import main
from qwenchat.environment import Environment
from tests.report.records import record, write
from tests.report.test_page import Page
from tests.support.cli_harness import ChatServer


def qwenchat(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    env = Environment(stdin=io.StringIO(""), stdout=out, stderr=err, stdin_isatty=False, stdout_isatty=False)
    return main(argv, env), out.getvalue(), err.getvalue()


def keys(page: Path) -> list[str]:
    return [a["data-key"] for a in Page(page.read_text()).with_class("record")]


def test_the_page_goes_beside_the_results_or_where_o_says(tmp_path):
    results = write(tmp_path / "run.jsonl", [record(1, "", 1, "one"), record(2, "", 1, "two")])
    rc, out, err = qwenchat(["report", str(results)])
    page = tmp_path / "run.html"
    assert rc == 0 and out == "" and err == f"wrote {page} (2 records)\n"
    assert keys(page) == ["p1//s1#abc1", "p2//s1#abc2"]
    other = tmp_path / "other.html"
    rc, _, err = qwenchat(["report", str(results), "-o", str(other)])
    assert rc == 0 and keys(other) == keys(page)


def test_a_torn_results_file_is_one_notice_and_the_rest_is_reported(tmp_path):
    results = write(tmp_path / "run.jsonl", [record(1, "", 1, "one")])
    with open(results, "a") as f:
        f.write('{"key": "p2//s1#abc2", "answer": "hal')
    rc, _, err = qwenchat(["report", str(results)])
    assert rc == 0 and err.splitlines()[0] == f"{results}: its last line was cut by a killed write; left out"
    assert len(err.splitlines()) == 2 and keys(tmp_path / "run.html") == ["p1//s1#abc1"]


def test_a_bad_results_file_is_one_line_exit_2_and_writes_nothing(tmp_path):
    good = json.dumps(record(1, "", 1, "one"))
    cases = {
        "notjson.jsonl": (f"{good}\n{{oops\n", "line 2: not a JSON record"),
        "other.jsonl": (f'{good}\n{{"a": 1}}\n', "not a qwenchat batch record"),
        "twice.jsonl": (f"{good}\n{good}\n", "appears twice"),
        "empty.jsonl": ("", "no records in it"),
        "binary.jsonl": ("\udcff\n", "not a JSON record"),
    }
    for name, (content, needle) in cases.items():
        path = tmp_path / name
        path.write_bytes(content.encode("utf-8", errors="surrogateescape"))
        rc, out, err = qwenchat(["report", str(path)])
        assert rc == 2 and needle in err and err.count("\n") == 1 and out == "", (name, err)
        assert not path.with_suffix(".html").exists()
    for argv, needle in (
        (["report", str(tmp_path / "missing.jsonl")], "no such file"),
        (["report", str(tmp_path)], "is a directory"),
        (
            ["report", str(tmp_path / "notjson.jsonl"), "-o", str(tmp_path / "notjson.jsonl")],
            "results file itself",
        ),
    ):
        rc, _, err = qwenchat(argv)
        assert rc == 2 and needle in err and err.count("\n") == 1, err
    good_file = write(tmp_path / "good.jsonl", [record(1, "", 1, "one")])
    rc, _, err = qwenchat(["report", str(good_file), "-o", str(tmp_path / "no" / "such" / "dir.html")])
    assert rc == 2 and "cannot write it" in err and err.count("\n") == 1


def test_a_report_of_a_real_batch_run(tmp_path):
    prompts = tmp_path / "p.txt"
    prompts.write_text("What is 2+2?\nSay <b>hi</b>\n")
    out = tmp_path / "r.jsonl"
    with ChatServer() as server:  # echoes each prompt
        argv = ["batch", str(prompts), "--endpoint", server.url, "--out", str(out), "--grid", "top_k=1,2"]
        rc, _, err = qwenchat([*argv, "--seeds", "1,2"])
        assert rc == 0, err
    rc, _, err = qwenchat(["report", str(out)])
    assert rc == 0, err
    records = [json.loads(line) for line in out.read_text().splitlines()]
    page = Page((tmp_path / "r.html").read_text())
    assert keys(tmp_path / "r.html") == [r["key"] for r in records]
    assert len(page.with_class("diff-toggle")) == 4  # variant B's records, each against A's of its seed
    assert "ECHO Say <b>hi</b>" in "".join(page.text)  # as text, not markup
