"""Check specs: the long, short and inline forms, shared checks files, and one line for every bad spec."""

from __future__ import annotations

import json

import pytest

from qwenchat.checks.spec import KINDS, CheckError, inline_specs, parse_check, parse_checks, parse_inline
from qwenchat.checks.suite import own_checks, read_checks


def one_line(exc: pytest.ExceptionInfo) -> str:
    text = str(exc.value)
    assert "\n" not in text and text
    return text


def test_long_and_short_forms_agree():
    long = parse_check({"kind": "contains", "value": "Paris", "ignore_case": True})
    short = parse_check({"contains": "Paris", "ignore_case": True})
    assert long == short
    assert long.name == "contains Paris" and long.spec()["ignore_case"] is True


def test_every_kind_parses_inline():
    checks = parse_inline(
        'contains="New York" not_contains=Lyon regex="^\\d+$" equals starts_with=Yes'
        ' json_schema=\'{"type":"object"}\''
        ' max_tokens=64 finish=stop think=absent tool_call=\'get_weather{"city": "Paris"}\' judge="is polite"'
    )
    assert [c.kind for c in checks] == list(KINDS)
    by = {c.kind: c for c in checks}
    assert by["contains"].value == "New York"
    assert by["equals"].value is None and by["equals"].name == "equals reference"
    assert by["max_tokens"].value == 64
    assert by["tool_call"].options == {"arguments": {"city": "Paris"}}
    assert by["json_schema"].value == {"type": "object"}


def test_inline_json_form():
    checks = parse_inline('[{"contains": ["a", "b"], "mode": "any"}, {"think": "present", "max_tokens": 20}]')
    assert checks[0].value == ["a", "b"] and checks[0].name == 'contains any ["a", "b"]'
    assert checks[1].options == {"max_tokens": 20} and checks[1].name == "think present <=20 tokens"


@pytest.mark.parametrize(
    ("text", "value", "options"),
    [
        ("think=present", "present", {}),
        ("think=200", None, {"max_tokens": 200}),
        ("think=present:5", "present", {"max_tokens": 5}),
    ],
)
def test_think_inline(text, value, options):
    (c,) = parse_inline(text)
    assert (c.value, c.options) == (value, options)


@pytest.mark.parametrize(
    ("spec", "needle"),
    [
        ({"contians": "x"}, "no check kind"),
        ({"contains": "x", "regex": "y"}, "two check kinds"),
        ({"kind": "nope"}, "unknown check kind"),
        ({"contains": ""}, "non-empty text"),
        ({"contains": "x", "mode": "some"}, "all or any"),
        ({"contains": "x", "colour": 1}, "no option colour"),
        ({"regex": "("}, "not a valid pattern"),
        ({"max_tokens": -1}, "whole number"),
        ({"finish": "eos"}, "stop or length"),
        ({"think": "maybe"}, "present, absent"),
        ({"tool_call": "f", "arguments": [1]}, "must be an object"),
        ({"judge": " "}, "rubric"),
        ({"json_schema": {"type": 3}}, "not a valid JSON schema"),
        ({"json_schema": "missing.json"}, "no such file"),
        ({"equals": 3}, "must be text"),
        ({"contains": "x", "ignore_case": "yes"}, "true or false"),
        ("contains", "is an object"),
    ],
)
def test_bad_specs_are_one_line(spec, needle, tmp_path):
    with pytest.raises(CheckError) as exc:
        parse_checks([{"finish": "stop"}, spec], "suite.jsonl line 4", base=tmp_path)
    text = one_line(exc)
    assert text.startswith("suite.jsonl line 4: check 2") and needle in text


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("contians=x", "unknown check kind"),
        ("max_tokens=many", "whole number"),
        ('contains="open', "quotation"),
        ("regex", "needs a value"),
        ("{bad json", "not JSON"),
        ("tool_call='f{'", "not a JSON object"),
    ],
)
def test_bad_inline_is_one_line(text, needle):
    with pytest.raises(CheckError) as exc:
        inline_specs(text, ":check")
    assert needle in one_line(exc)


def test_checks_files(tmp_path):
    (tmp_path / "s.json").write_text("{}")
    toml = tmp_path / "suite.toml"
    toml.write_text('[[checks]]\nmax_tokens = 64\n\n[[checks]]\njson_schema = "s.json"\nname = "shape"\n')
    checks = read_checks(toml)
    assert [c.kind for c in checks] == ["max_tokens", "json_schema"]
    assert checks[1].name == "shape" and checks[1].value == str(tmp_path / "s.json")  # next to the file
    assert all(c.source == "shared" for c in checks)
    jsonl = tmp_path / "c.jsonl"
    jsonl.write_text('{"finish": "stop"}\n\n[{"contains": "a"}, {"not_contains": "b"}]\n')
    assert [c.kind for c in read_checks(jsonl)] == ["finish", "contains", "not_contains"]
    js = tmp_path / "c.json"
    js.write_text(json.dumps({"checks": [{"regex": "x"}]}))
    assert read_checks(js)[0].kind == "regex"


@pytest.mark.parametrize(
    ("name", "text", "needle"),
    [
        ("c.jsonl", '{"finish": "stop"}\n{"finish": "eos"}\n', "c.jsonl line 2: check 1 (finish)"),
        ("c.jsonl", '{"finish": "stop"}\nnot json\n', "line 2: not JSON"),
        ("c.toml", "[[checks]\n", "not TOML"),
        ("c.toml", "[[check]]\nfinish = 'stop'\n", "unknown key(s) check"),
        ("c.json", "[]", "no checks in it"),
    ],
)
def test_bad_checks_files(tmp_path, name, text, needle):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(CheckError) as exc:
        read_checks(path)
    assert needle in one_line(exc)


def test_missing_checks_file(tmp_path):
    with pytest.raises(CheckError) as exc:
        read_checks(tmp_path / "none.toml")
    assert "no such file" in one_line(exc)


def test_equals_reference_needs_a_reference():
    with pytest.raises(CheckError) as exc:
        own_checks([{"equals": None}], "p.jsonl line 3", has_reference=False)
    assert "p.jsonl line 3: check 1 (equals)" in one_line(exc)
    assert own_checks([{"equals": None}], "p.jsonl line 3", has_reference=True)[0].value is None
