"""Checks on the real demo model: a six-prompt suite with every check kind (one case fails on purpose)
gives the expected verdicts and exit status; the demo model judges with schema-valid verdicts; `check` on
the run's results agrees with the run; a case kept with :keep replays (greedy) with the same answer."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from qwenchat.checks.judge import VERDICT_SCHEMA
from qwenchat.structured.check import validate_answer
from tests.batch.test_runner import qwenchat

JSON_SCHEMA = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
    "required": ["name", "age"],
}
SUITE = [
    {
        "prompt": "What is the capital of France? Answer in one word.",
        "checks": [
            {"contains": "paris", "ignore_case": True},
            {"not_contains": ["Lyon", "Marseille"]},
            {"starts_with": "Paris"},
            {"regex": r"^Paris\.?$"},
            {"judge": "The answer names Paris as the capital of France."},
        ],
    },
    {
        "prompt": "Reply with exactly the word yes and nothing else.",
        "checks": [{"equals": "yes", "ignore_case": True}],
    },
    {
        "prompt": 'Output only this JSON object, no code fence: {"name": "Ann", "age": 3}',
        "checks": [{"json_schema": JSON_SCHEMA}],
    },
    {
        "prompt": "Count from 1 to 100, separated by commas.",
        "checks": [{"finish": "length"}, {"think": "absent"}],
    },
    {
        # fails on purpose: the demo model answers in words, it calls no tool
        "prompt": "What is the weather in Paris?",
        "checks": [{"tool_call": "get_weather", "arguments": {"city": "Paris"}}],
    },
    {
        "prompt": "Write a Python function that adds two numbers.",
        "checks": [{"contains": "def "}, {"think": 0}],
    },
]
SHARED = '[[checks]]\nmax_tokens = 16\nname = "within the limit"\n'
RUN = ["--max-new-tokens", "16", "--temperature", "0", "--seed", "1"]


@pytest.fixture(scope="module")
def demo_engine(demo_loaded):
    from qwenchat.engines.transformers.engine import TransformersEngine

    engine = TransformersEngine(demo_loaded.model, demo_loaded.tokenizer, demo_loaded.name)
    return engine, {"model": demo_loaded.name, "device": "cpu", "dtype": "bf16", "extra": []}


def lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()]


def by_name(record: dict) -> dict[str, bool]:
    return {v["name"]: v["pass"] for v in record["checks"]}


def test_suite_verdicts_judge_and_check_agree(demo_engine, tmp_path):
    suite, shared, out = tmp_path / "suite.jsonl", tmp_path / "shared.toml", tmp_path / "r.jsonl"
    suite.write_text("".join(json.dumps(case) + "\n" for case in SUITE))
    shared.write_text(SHARED)
    rc, _, err = qwenchat(
        ["batch", str(suite), "--demo", "--out", str(out), "--checks", str(shared), *RUN], demo_engine
    )
    recs = lines(out)
    assert len(recs) == 6, err
    expected = [
        {"contains paris": True, 'not_contains ["Lyon", "Marseille"]': True, "starts_with Paris": True},
        {"equals yes": True},
        {"json_schema": True},
        {"finish length": True, "think absent": True},
        {"tool_call get_weather": False},
        {"contains def": True, "think <=0 tokens": True},
    ]
    for record, want in zip(recs, expected, strict=True):
        got = by_name(record)
        assert {k: got[k] for k in want} == want, record["answer"]
        assert got["within the limit"] is True and record["passed"] == all(got.values())
    # the judge: the demo model itself, its answer constrained to the verdict schema and kept
    (judged,) = [v for v in recs[0]["checks"] if v["kind"] == "judge"]
    assert validate_answer(judged["judge"]["answer"], VERDICT_SCHEMA)[0], judged
    assert "Rubric:" in judged["judge"]["prompt"] and recs[0]["answer"] in judged["judge"]["prompt"]
    assert judged["detail"] and not judged["detail"].startswith("the judge")
    passed = sum(r["passed"] for r in recs)
    assert rc == 1 and f"{passed} of 6 passed" in err and "✗ tool_call get_weather" in err
    # `check` on the results: the same verdicts (the judge greedy again, on the same model)
    graded = tmp_path / "g.jsonl"
    rc2, report, _ = qwenchat(["check", str(out), "--judge", "demo", "--out", str(graded)], demo_engine)
    assert rc2 == 1 and f"{passed} of 6 passed" in report
    assert [by_name(r) for r in lines(graded)] == [by_name(r) for r in recs]
    assert lines(graded)[0]["checks"][4]["judge"]["answer"] == judged["judge"]["answer"]


def test_keep_then_batch_replays_the_answer(demo_engine, make_repl, out, tmp_path):
    engine, _ = demo_engine
    suite, results = tmp_path / "kept.jsonl", tmp_path / "r.jsonl"
    app = make_repl(engine, out)
    app.handle_line(":conf temperature=0 max_new_tokens=8")
    app.handle_line("What is the capital of France? Answer in one word.")
    answer = app.session.answers()[-1]
    app.handle_line(f":keep {suite} equals contains=Paris")
    assert "kept as case 1" in out.buf.getvalue(), out.buf.getvalue()
    rc, _, err = qwenchat(["batch", str(suite), "--demo", "--out", str(results)], demo_engine)
    (record,) = lines(results)
    assert record["answer"] == answer == record["reference"], err
    assert rc == 0 and record["passed"] is True and [v["pass"] for v in record["checks"]] == [True, True]
