"""Grading: every check kind passes and fails where it should, and says why in its detail."""

from __future__ import annotations

import json

import pytest

from qwenchat.checks.grade import Answer, grade, subset, verdict
from qwenchat.checks.judge import VERDICT_SCHEMA, JudgeError, judge_prompt, read_verdict
from qwenchat.checks.rates import parse_rate, pass_rates
from qwenchat.checks.spec import CheckError, parse_check

CALL = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris", "days": 2}}\n</tool_call>'


def run(spec, text, **fields):
    return verdict(parse_check(spec), Answer(text, **fields))


@pytest.mark.parametrize(
    ("spec", "text", "fields", "ok"),
    [
        ({"contains": "Paris"}, "It is Paris.", {}, True),
        ({"contains": "paris"}, "It is Paris.", {}, False),
        ({"contains": "paris", "ignore_case": True}, "It is Paris.", {}, True),
        ({"contains": ["Paris", "France"]}, "It is Paris.", {}, False),
        ({"contains": ["Paris", "France"], "mode": "any"}, "It is Paris.", {}, True),
        (
            {"contains": "Paris"},
            "<think>Paris?</think>I do not know.",
            {},
            False,
        ),  # the answer, not the think
        ({"not_contains": "Lyon"}, "It is Paris.", {}, True),
        ({"not_contains": ["Lyon", "Paris"]}, "It is Paris.", {}, False),
        ({"not_contains": ["Lyon", "Paris"], "mode": "any"}, "It is Paris.", {}, True),
        ({"regex": r"^\d+$"}, "42", {}, True),
        ({"regex": r"^\d+$"}, "forty-two", {}, False),
        ({"regex": "^b", "multiline": True}, "a\nb", {}, True),
        ({"equals": "Paris"}, "  Paris\n", {}, True),
        ({"equals": "Paris"}, "Paris.", {}, False),
        ({"equals": "paris", "ignore_case": True}, "PARIS", {}, True),
        ({"equals": None}, "Paris.", {"reference": "Paris."}, True),
        ({"equals": None}, "Paris!", {"reference": "Paris."}, False),
        ({"equals": None}, "Paris.", {}, False),  # no reference
        ({"starts_with": "Yes"}, "\n Yes, it is.", {}, True),
        ({"starts_with": "Yes"}, "No.", {}, False),
        ({"json_schema": {"type": "object", "required": ["a"]}}, '{"a": 1}', {}, True),
        ({"json_schema": {"type": "object", "required": ["a"]}}, '{"b": 1}', {}, False),
        ({"json_schema": {"type": "object"}}, "not json", {}, False),
        ({"max_tokens": 10}, "x", {"generated_tokens": 10}, True),
        ({"max_tokens": 10}, "x", {"generated_tokens": 11}, False),
        ({"max_tokens": 10}, "x", {}, False),  # unknown count
        ({"finish": "stop"}, "x", {"finish_reason": "stop"}, True),
        ({"finish": "length"}, "x", {"finish_reason": "stop"}, False),
        ({"think": "present"}, "<think>hm</think>x", {}, True),
        ({"think": "present"}, "x", {}, False),
        ({"think": "absent"}, "x", {}, True),
        ({"think": "absent"}, "<think>hm</think>x", {}, False),
        ({"think": "absent"}, "hm</think>x", {}, False),  # the prompt opened the block
        ({"think": "present", "max_tokens": 5}, "<think>hm</think>x", {"thinking_tokens": 5}, True),
        ({"think": "present", "max_tokens": 5}, "<think>hm</think>x", {"thinking_tokens": 6}, False),
        ({"think": 5}, "x", {}, True),  # no block: 0 tokens
        ({"think": 5}, "<think>hm</think>x", {}, False),  # count unknown
        ({"tool_call": "get_weather"}, CALL, {}, True),
        ({"tool_call": "get_time"}, CALL, {}, False),
        ({"tool_call": "get_weather", "arguments": {"city": "Paris"}}, CALL, {}, True),
        ({"tool_call": "get_weather", "arguments": {"city": "Lyon"}}, CALL, {}, False),
        (
            {"tool_call": "f", "arguments": {"a": 1}},
            "",
            {"tool_calls": [{"name": "f", "arguments": {"a": 1}}]},
            True,
        ),
    ],
)
def test_kinds(spec, text, fields, ok):
    v = run(spec, text, **fields)
    assert v["pass"] is ok, v
    assert v["detail"] and "\n" not in v["detail"]
    assert v["check"]["kind"] == v["kind"]


def test_json_schema_file(tmp_path):
    path = tmp_path / "s.json"
    path.write_text(json.dumps({"type": "array"}))
    assert run({"json_schema": str(path)}, "[1]")["pass"]
    assert not run({"json_schema": str(path)}, "{}")["pass"]


def test_subset():
    assert subset({"a": {"b": 1}}, {"a": {"b": 1, "c": 2}, "d": 3})
    assert not subset({"a": 1}, {"a": True}) and not subset({"a": [1]}, {"a": [1, 2]})
    assert subset({"a": 1.0}, {"a": 1})


def test_grade_record_fields():
    checks = [parse_check({"contains": "a"}), parse_check({"finish": "stop"})]
    out = grade(checks, Answer("a", finish_reason="length"))
    assert [v["pass"] for v in out["checks"]] == [True, False] and out["passed"] is False
    assert grade([], Answer("a")) == {}


class ScriptedJudge:
    name = "scripted"

    def __init__(self, answer):
        self.answer, self.asked = answer, []

    def ask(self, system, prompt, schema):
        self.asked.append((system, prompt, schema))
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


def test_judge_verdicts():
    check = parse_check({"judge": "names the capital"})
    good = ScriptedJudge('{"reason": "It names Paris.", "pass": true}')
    v = verdict(check, Answer("Paris.", prompt="Capital of France?", reference="Paris"), good)
    assert v["pass"] and v["detail"] == "It names Paris."
    assert v["judge"]["answer"] == good.answer and "Capital of France?" in v["judge"]["prompt"]
    assert good.asked[0][2] is VERDICT_SCHEMA and "Paris" in good.asked[0][1]
    bad = verdict(check, Answer("x"), ScriptedJudge('{"reason": "cut'))
    assert not bad["pass"] and "not a verdict" in bad["detail"]
    failed = verdict(check, Answer("x"), ScriptedJudge(JudgeError("interrupted")))
    assert not failed["pass"] and "interrupted" in failed["detail"]
    assert not verdict(check, Answer("x"), None)["pass"]


def test_read_verdict():
    assert read_verdict('<think>hm</think>{"reason": "ok", "pass": false}') == (False, "ok")
    assert read_verdict('{"pass": true}') is None
    assert "Rubric:\nbe short" in judge_prompt("be short", "q", "a")


def test_rates():
    recs = [
        {
            "variant": "A",
            "variant_overrides": {"t": "0"},
            "checks": [{"name": "c", "pass": True}],
            "passed": True,
        },
        {
            "variant": "B",
            "variant_overrides": {"t": "1"},
            "checks": [{"name": "c", "pass": False}],
            "passed": False,
        },
        {"variant": "B", "variant_overrides": {"t": "1"}},
    ]
    rates = pass_rates(recs)
    assert (rates.records.passed, rates.records.total, rates.ungraded) == (1, 2, 1)
    assert rates.by_variant["B t=1"].rate == 0.0 and rates.by_check["c"].total == 2
    assert rates.exit_code() == 1 and rates.exit_code(0.5) == 0 and rates.exit_code(0.51) == 1
    assert len(rates.failures) == 1 and rates.one_line().startswith("1 of 2 passed (50.0%)")
    assert parse_rate("90%") == 0.9 and parse_rate("0.5") == 0.5
    for bad in ("x", "2", "-1%"):
        with pytest.raises(CheckError):
            parse_rate(bad)
