"""`qwenchat batch --checks`, `qwenchat check` and the verdicts in `qwenchat diff`, in-process with the fake
engine (what is graded does not depend on a model here; tests/checks/test_demo.py runs the real one)."""

from __future__ import annotations

import json
from pathlib import Path

from tests.cli.test_app import Run

SUITE = "\n".join(
    [
        json.dumps({"prompt": "capital of France?", "checks": [{"contains": "Paris"}]}),
        json.dumps({"prompt": "say no", "reference": "no", "checks": [{"equals": None}]}),
        json.dumps({"prompt": "anything"}),
    ]
)


def lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()]


def setup(tmp_path: Path) -> tuple[Path, Path]:
    prompts, shared = tmp_path / "suite.jsonl", tmp_path / "shared.toml"
    prompts.write_text(SUITE + "\n")
    shared.write_text('[[checks]]\nmax_tokens = 3\nname = "short"\n')
    return prompts, shared


def test_batch_grades_each_record_and_exits_by_the_verdicts(tmp_path):
    prompts, shared = setup(tmp_path)
    out = tmp_path / "r.jsonl"
    run = Run(tmp_path, answers=["It is Paris.", "yes", "a b c d e"])
    assert run("batch", str(prompts), "--out", str(out), "--checks", str(shared)) == 1, run.err
    recs = lines(out)
    assert [r["passed"] for r in recs] == [True, False, False]
    assert [v["name"] for v in recs[0]["checks"]] == ["contains Paris", "short"]
    assert [v["source"] for v in recs[0]["checks"]] == ["prompt", "shared"]
    assert recs[1]["reference"] == "no" and "differs" in recs[1]["checks"][0]["detail"]
    assert "1 of 3 passed (33.3%)" in run.err and "failures" in run.err and "✗ equals reference" in run.err
    # the same results graded again agree; a rate under the bar still fails, one above it passes
    again = Run(tmp_path)
    assert again("check", str(out)) == 1 and "1 of 3 passed" in again.out
    assert Run(tmp_path)("check", str(out), "--fail-under", "30%") == 0
    assert Run(tmp_path)("check", str(out), "--fail-under", "0.5") == 1


def test_check_with_new_shared_checks_and_out(tmp_path):
    prompts, shared = setup(tmp_path)
    out, graded = tmp_path / "r.jsonl", tmp_path / "g.jsonl"
    Run(tmp_path, answers=["Paris", "no", "ok"])(
        "batch", str(prompts), "--out", str(out), "--checks", str(shared)
    )
    looser = tmp_path / "loose.jsonl"
    looser.write_text('{"finish": "length"}\n')
    run = Run(tmp_path)
    assert run("check", str(out), "--checks", str(looser), "--out", str(graded)) == 1
    recs = lines(graded)
    assert [[v["name"] for v in r["checks"]] for r in recs] == [
        ["contains Paris", "finish length"],
        ["equals reference", "finish length"],
        ["finish length"],
    ]
    assert lines(out)[0]["checks"][1]["name"] == "short"  # the graded file is another file
    assert run.factory_calls == []  # no model loaded for checks without judge


def test_check_torn_results_file_is_one_line_and_loses_nothing(tmp_path):
    prompts, shared = setup(tmp_path)
    out = tmp_path / "r.jsonl"
    Run(tmp_path, answers=["Paris", "no", "ok"])(
        "batch", str(prompts), "--out", str(out), "--checks", str(shared)
    )
    data = out.read_bytes() + b'{"key": "p9/s1#x", "id": "p9'
    out.write_bytes(data)
    run = Run(tmp_path)
    assert run("check", str(out)) == 0, run.out + run.err
    notes = [x for x in run.err.splitlines() if x.strip()]
    assert len(notes) == 1 and "cut by a killed write" in notes[0]
    assert out.read_bytes() == data and "3 of 3 passed" in run.out


def test_bad_checks_are_one_line_exit_2_and_nothing_runs(tmp_path):
    prompts, _ = setup(tmp_path)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"finish": "stop"}\n{"regex": "("}\n')
    out = tmp_path / "r.jsonl"
    run = Run(tmp_path)
    assert run("batch", str(prompts), "--out", str(out), "--checks", str(bad)) == 2
    (line,) = [x for x in run.err.splitlines() if x.strip()]
    assert "bad.jsonl line 2: check 1 (regex)" in line and "not a valid pattern" in line
    assert run.factory_calls == [] and not out.exists()
    inline = tmp_path / "p.txt"
    inline.write_text("first\n@check contains=a max_tokens=lots\n")
    run = Run(tmp_path)
    assert run("batch", str(inline), "--out", str(out)) == 2
    assert "p.txt line 2: check 2 (max_tokens)" in run.err and run.factory_calls == []
    for argv, needle in (
        (["check", str(out)], "no such file"),
        (["check", str(prompts), "--checks", str(bad)], "bad.jsonl line 2"),
        (["batch", str(prompts), "--out", str(out), "--fail-under", "lots"], "--fail-under"),
    ):
        run = Run(tmp_path)
        assert run(*argv) == 2 and needle in run.err and len(run.err.strip().splitlines()) == 1, run.err


def test_check_judge_needs_a_model(tmp_path):
    prompts, _ = setup(tmp_path)
    out, judged = tmp_path / "r.jsonl", tmp_path / "j.toml"
    Run(tmp_path, answers=["Paris", "no", "ok"])("batch", str(prompts), "--out", str(out))
    judged.write_text('[[checks]]\njudge = "is polite"\n')
    run = Run(tmp_path)
    assert run("check", str(out), "--checks", str(judged)) == 2 and "--judge SPEC" in run.err


def test_csv_and_text_checks(tmp_path):
    csv = tmp_path / "p.csv"
    csv.write_text('prompt,checks\nhello,"contains=hi finish=stop"\nbye,\n')
    txt = tmp_path / "p.txt"
    txt.write_text('hello\n@check contains=hi\n"""\nbye\n"""\n@check not_contains="see you"\n')
    for path in (csv, txt):
        out = tmp_path / f"{path.suffix[1:]}.jsonl"
        run = Run(tmp_path, answers=["hi there", "see you"])
        run("batch", str(path), "--out", str(out))
        recs = lines(out)
        assert recs[0]["passed"] is True
        assert ("passed" in recs[1]) == (path is txt) and recs[1].get("passed") in (None, False)


def test_diff_lists_verdict_changes_first(tmp_path):
    prompts, shared = setup(tmp_path)
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    Run(tmp_path, answers=["Paris", "yes", "ok"])(
        "batch", str(prompts), "--out", str(a), "--checks", str(shared)
    )
    Run(tmp_path, answers=["Lyon", "no", "ok"])(
        "batch", str(prompts), "--out", str(b), "--checks", str(shared)
    )
    run = Run(tmp_path)
    assert run("diff", str(a), str(b)) == 1
    text = run.out
    assert text.index("passed -> failed: prompt 1") < text.index("failed -> passed: prompt 2")
    assert text.index("failed -> passed") < text.index("changed: prompt 1")
    assert "contains Paris: pass -> fail" in text and "equals reference: fail -> pass" in text
    assert "1 passed -> failed, 1 failed -> passed" in text


def test_check_without_any_checks_is_bad_input(tmp_path):
    prompts = tmp_path / "p.txt"
    prompts.write_text("hello\n")
    out = tmp_path / "r.jsonl"
    Run(tmp_path, answers=["hi"])("batch", str(prompts), "--out", str(out))
    run = Run(tmp_path)
    assert run("check", str(out)) == 2 and "no record has checks" in run.err


def test_check_with_an_endpoint_judge(tmp_path):
    """--judge URL: the verdict schema goes to the server as response_format; its answers become verdicts,
    and an answer that is not a verdict fails the check and says so."""
    from qwenchat.checks.judge import VERDICT_SCHEMA
    from tests.batch.test_runner import qwenchat
    from tests.support.cli_harness import ChatServer

    prompts, out, judged = tmp_path / "p.txt", tmp_path / "r.jsonl", tmp_path / "judge.toml"
    prompts.write_text("capital of France?\ncapital of Italy?\n")
    Run(tmp_path, answers=["Paris", "Paris"])("batch", str(prompts), "--out", str(out))
    judged.write_text('[[checks]]\njudge = "names the right capital"\n')
    with ChatServer('{"reason": "names Paris", "pass": true}', '{"reason": "cut') as server:
        rc, report, err = qwenchat(["check", str(out), "--checks", str(judged), "--judge", server.url])
        sent = server.requests
    assert rc == 1 and sent, err + report
    assert sent[0]["response_format"]["json_schema"]["schema"] == VERDICT_SCHEMA
    assert "names the right capital" in sent[0]["messages"][-1]["content"]
    assert "1 of 2 passed" in report and "not a verdict" in report


def test_toml_suite_runs_and_grades(tmp_path):
    suite = tmp_path / "suite.toml"
    suite.write_text(
        '[[checks]]\nfinish = "stop"\n\n[[prompts]]\nprompt = "capital?"\n'
        '  [[prompts.checks]]\n  contains = "Paris"\n\n[[prompts]]\nprompt = "other"\n'
    )
    out = tmp_path / "r.jsonl"
    run = Run(tmp_path, answers=["Paris", "Rome"])
    assert run("batch", str(suite), "--out", str(out)) == 0, run.err
    assert [[v["name"] for v in r["checks"]] for r in lines(out)] == [
        ["contains Paris", "finish stop"],
        ["finish stop"],
    ]


def test_model_judge_turn_is_greedy_constrained_and_stoppable():
    import pytest

    from qwenchat.checks.judge import JUDGE_SYSTEM, VERDICT_SCHEMA, JudgeError
    from qwenchat.checks.model_judge import ModelJudge
    from tests.support.fakes import FakeEngine

    engine = FakeEngine().enqueue(['{"reason": "ok", "pass": true}'])
    judge = ModelJudge(engine, "fake")
    assert judge.ask(JUDGE_SYSTEM, "grade this", VERDICT_SCHEMA) == '{"reason": "ok", "pass": true}'
    (request,) = engine.requests
    assert (
        request.json_schema is VERDICT_SCHEMA and request.settings["do_sample"] is False and request.seed == 0
    )
    assert request.messages[0] == {"role": "system", "content": JUDGE_SYSTEM}
    judge.watch = lambda session: False  # Ctrl-C came first: the turn never starts
    with pytest.raises(JudgeError, match="interrupted"):
        judge.ask(JUDGE_SYSTEM, "grade this", VERDICT_SCHEMA)
    assert len(engine.requests) == 1


def test_parallel_batch_grades_every_record_and_judges_on_the_endpoint(tmp_path):
    """batch --parallel N against a server: every record graded before it is written, the judge (the model
    under test) asked through the same server."""
    from tests.batch.test_runner import qwenchat
    from tests.support.cli_harness import ChatServer, echo_reply, text_reply

    echo = echo_reply()

    def answer(h, body):
        if "response_format" in body:  # the judge's turn
            text_reply('{"reason": "fine", "pass": true}')(h, body)
        else:
            echo(h, body)

    prompts, out = tmp_path / "p.txt", tmp_path / "r.jsonl"
    prompts.write_text("".join(f"say {i}\n@check contains='say {i}' judge=\"echoes\"\n" for i in range(6)))
    with ChatServer(then=answer) as server:
        argv = ["batch", str(prompts), "--endpoint", server.url, "--out", str(out), "--parallel", "3"]
        rc, _, err = qwenchat(argv)
        judged = [r for r in server.requests if "response_format" in r]
    recs = lines(out)
    assert rc == 0, err
    assert [r["prompt"] for r in recs] == [f"say {i}" for i in range(6)] and all(r["passed"] for r in recs)
    assert len(judged) == 6 and "6 of 6 passed" in err
