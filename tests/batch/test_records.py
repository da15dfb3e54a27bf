"""The results file (append, torn last lines, refusals) and `qwenchat diff` matching, without a model."""

from __future__ import annotations

import io
import json

import pytest

from qwenchat.batch.diff import diff_files, diff_records
from qwenchat.batch.inputs import BatchError
from qwenchat.batch.plan import Run
from qwenchat.batch.records import ResultsFile, read_records
from qwenchat.batch.runner import BatchContext, answer_one
from qwenchat.settings import Settings
from qwenchat.ui.batch import DiffView
from qwenchat.ui.terminal import make_console
from tests.support.fakes import FakeEngine


def rec(p: int, seed: int, answer: str, variant: dict | None = None, label: str = "", **extra) -> dict:
    return {
        "key": f"p{p}/{label}/s{seed}#h",
        "id": f"p{p}/{label}/s{seed}",
        "prompt_index": p,
        "vars_index": None,
        "variant": label,
        "variant_overrides": variant or {},
        "seed": seed,
        "prompt": f"prompt {p}",
        "messages": [{"role": "user", "content": f"prompt {p}"}],
        "answer": answer,
        **extra,
    }


def write(path, records, tail: bytes = b""):
    path.write_bytes(b"".join(json.dumps(r).encode() + b"\n" for r in records) + tail)


def test_append_reopen_and_torn_last_line(tmp_path):
    path = tmp_path / "r.jsonl"
    with ResultsFile(path) as f:
        f.append(rec(1, 1, "one"))
        f.append(rec(1, 2, "two\x1b[2J"))
    assert path.read_bytes().isascii()  # JSON escapes control characters and non-ASCII
    with open(path, "ab") as f:  # what a kill -9 in the middle of a write leaves
        f.write(json.dumps(rec(2, 1, "three")).encode()[:25])
    records, torn = read_records(path)
    assert torn and [r["answer"] for r in records] == ["one", "two\x1b[2J"]
    with ResultsFile(path) as f:
        assert f.torn and set(f.done) == {"p1//s1#h", "p1//s2#h"}
        f.append(rec(2, 1, "three"))
    records, torn = read_records(path)
    assert not torn and [r["answer"] for r in records] == ["one", "two\x1b[2J", "three"]


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        (b'{"key": 1}\n', "not a qwenchat batch record"),
        (b"garbage\n" + json.dumps(rec(1, 1, "a")).encode() + b"\n", "line 1: not a JSON record"),
        ((json.dumps(rec(1, 1, "a")) + "\n") * 2, "appears twice"),
    ],
)
def test_bad_results_file_is_one_line(tmp_path, data, needle):
    path = tmp_path / "r.jsonl"
    path.write_bytes(data if isinstance(data, bytes) else data.encode())
    with pytest.raises(BatchError) as exc:
        ResultsFile(path).open()
    assert needle in str(exc.value) and "\n" not in str(exc.value)


def test_a_record_says_whether_its_answer_is_valid_json():
    """With --json-schema, the runner's own record carries json_valid and json_check (the fake engine does
    not constrain; the check after the turn is what the record reports)."""
    engine = FakeEngine().enqueue(['{"name": "Zed"}', "not json"])
    schema = {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}
    ctx = BatchContext(engine, Settings(engine.default_settings()), "m", "fake", json_schema=schema)
    runs = [Run(1, None, "", {}, seed, [{"role": "user", "content": "who?"}], None) for seed in (1, 2)]
    valid, invalid = (answer_one(ctx, run, lambda session: True) for run in runs)
    assert valid["answer"] == '{"name": "Zed"}' and valid["json_valid"] is True, valid
    assert invalid["json_valid"] is False and invalid["json_check"], invalid
    ctx.json_schema = None
    assert "json_valid" not in answer_one(ctx, runs[0], lambda session: True)


def test_diff_matches_by_prompt_variant_and_seed_not_label():
    t02, t10 = {"temperature": "0.2"}, {"temperature": "1.0"}
    old = [rec(1, 1, "same", t02, "A"), rec(1, 1, "old words here", t10, "B"), rec(2, 1, "gone")]
    # labels moved (a new variant in front), one answer changed, one run only on each side
    new = [rec(1, 1, "new words here", t10, "C"), rec(1, 1, "same", t02, "B"), rec(3, 1, "added")]
    report = diff_records(old, new)
    assert [p.new["variant"] for p in report.same] == ["B"]
    assert [(p.old["answer"], p.new["answer"]) for p in report.changed] == [
        ("old words here", "new words here")
    ]
    assert report.changed[0].summary.first_difference == 0
    assert [r["prompt_index"] for r in report.only_old] == [2]
    assert [r["prompt_index"] for r in report.only_new] == [3]
    assert report.exit_code == 1
    assert diff_records(old, list(reversed(old))).exit_code == 0


def test_diff_files_report_is_terminal_safe_and_marks_words(tmp_path):
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    write(a, [rec(1, 1, "the cat sat \x1b]52;c;aGk=\x07 down")])
    write(b, [rec(1, 1, "the dog sat \x1b]52;c;aGk=\x07 down")], tail=b'{"torn')
    report = diff_files(a, b)
    assert report.exit_code == 1 and len(report.notes) == 1 and "b.jsonl" in report.notes[0]
    buf = io.StringIO()
    DiffView(make_console(buf)).show(report)
    text = buf.getvalue()
    assert "\x1b" not in text and "\x07" not in text
    assert "[-cat-] {+dog+}" in text and "0 identical, 1 changed" in text


def test_diff_files_bad_input(tmp_path):
    (tmp_path / "a.jsonl").write_text("not json\n")
    with pytest.raises(BatchError) as exc:
        diff_files(tmp_path / "a.jsonl", tmp_path / "missing.jsonl")
    assert "a.jsonl line 1" in str(exc.value)
    with pytest.raises(BatchError) as exc:
        diff_files(tmp_path / "missing.jsonl", tmp_path / "a.jsonl")
    assert "no such file" in str(exc.value)


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("no_color", [False, True])
def test_diff_colours_only_on_a_terminal_without_no_color(monkeypatch, no_color):
    if no_color:
        monkeypatch.setenv("NO_COLOR", "1")
    else:
        monkeypatch.delenv("NO_COLOR", raising=False)
    report = diff_records([rec(1, 1, "a cat")], [rec(1, 1, "a dog")])
    buf = _Tty()
    DiffView(make_console(buf)).show(report)
    text = buf.getvalue()
    if no_color:
        assert "[-cat-] {+dog+}" in text and "\x1b[3" not in text
    else:
        assert "[-cat-]" not in text and "\x1b[" in text and "cat" in text and "dog" in text


def test_diff_says_when_the_runs_were_made_on_different_setups(tmp_path):
    base = {"engine": "llama.cpp", "threads": 2, "cpu": "Xeon (avx2, avx512f)", "weights_sha256": "a" * 64}
    other = {**base, "cpu": "EPYC (avx2)"}
    a, b, c = tmp_path / "a.jsonl", tmp_path / "b.jsonl", tmp_path / "c.jsonl"
    write(a, [rec(1, 1, "x", fingerprint=base), rec(2, 1, "y", fingerprint=base)])
    write(b, [rec(1, 1, "x", fingerprint=other), rec(2, 1, "z", fingerprint=other)])
    write(c, [rec(1, 1, "x"), rec(2, 1, "y")])  # written before fingerprints
    (note,) = diff_files(a, b).notes
    assert note.endswith("so answers may differ: cpu: Xeon (avx2, avx512f) -> EPYC (avx2)")
    assert diff_files(a, a).notes == [] and diff_files(a, c).notes == []


def test_a_batch_record_carries_the_engines_fingerprint():
    class Fingerprinted(FakeEngine):
        def fingerprint(self) -> dict:
            return {"engine": "fake", "dtype": "float32"}

    for engine, expected in ((Fingerprinted(), {"engine": "fake", "dtype": "float32"}), (FakeEngine(), None)):
        engine.enqueue(["ok"])
        ctx = BatchContext(engine, Settings(engine.default_settings()), "m", "fake")
        run = Run(1, None, "", {}, 1, [{"role": "user", "content": "hi"}], None)
        assert answer_one(ctx, run, lambda session: True)["fingerprint"] == expected
