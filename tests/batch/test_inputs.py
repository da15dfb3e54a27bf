"""Prompt files, placeholders, seeds and the planned runs of a batch: every malformed input is one line."""

from __future__ import annotations

import pytest

from qwenchat.batch.inputs import (
    BatchError,
    check_placeholders,
    filled,
    parse_csv,
    parse_jsonl,
    parse_text,
    read_prompts,
    read_vars,
)
from qwenchat.batch.plan import parse_seeds, plan_runs
from qwenchat.compare.variants import Variant, parse_variants
from qwenchat.errors import UserError
from qwenchat.settings import NEUTRAL


def one_line(exc: pytest.ExceptionInfo) -> str:
    text = str(exc.value)
    assert "\n" not in text and text
    return text


def test_text_lines_and_blocks():
    text = 'first\n\n  second  \n"""\nline one\n\nline two\n"""\n"""inline"""\n"""start\nend"""\n'
    prompts = parse_text(text)
    assert [p.text for p in prompts] == ["first", "second", "line one\n\nline two", "inline", "start\nend"]
    assert [p.index for p in prompts] == [1, 2, 3, 4, 5]
    assert [p.line for p in prompts] == [1, 3, 4, 9, 10]


@pytest.mark.parametrize(
    ("text", "needle"),
    [('ok\n"""\nnever closed\n', "line 2"), ('"""\n\n"""\n', "empty")],
)
def test_text_errors(text, needle):
    with pytest.raises(BatchError) as exc:
        parse_text(text, "p.txt")
    assert needle in one_line(exc)


def test_jsonl_forms():
    text = "\n".join(
        [
            '"plain"',
            '{"prompt": "hi", "system": null, "settings": {"temperature": 0.5}}',
            '[{"role": "system", "content": "S"}, {"role": "user", "content": "a"},'
            ' {"role": "assistant", "content": "b"}, {"role": "user", "content": "c"}]',
            '{"messages": [{"role": "user", "content": "x"}], "system": "T"}',
        ]
    )
    p = parse_jsonl(text)
    assert [x.text for x in p] == ["plain", "hi", "c", "x"]
    assert (p[0].has_system, p[1].has_system, p[1].system) == (False, True, None)
    assert p[1].settings == {"temperature": 0.5}
    assert p[2].system == "S" and [m["role"] for m in p[2].messages] == ["user", "assistant", "user"]
    assert p[3].system == "T"


@pytest.mark.parametrize(
    ("line", "needle"),
    [
        ("{not json", "not JSON"),
        ("42", "expected a prompt"),
        ('{"prompt": "a", "messages": []}', "either"),
        ('{"prompt": ""}', "non-empty"),
        ('{"prompt": "a", "colour": 1}', "unknown field"),
        ('[{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]', "last message"),
        ('[{"role": "tool", "content": "a"}]', "role 'tool'"),
        ('{"prompt": "a", "settings": [1]}', "settings"),
        ('{"prompt": "a", "system": 3}', "system"),
    ],
)
def test_jsonl_errors(line, needle):
    with pytest.raises(BatchError) as exc:
        parse_jsonl('"fine"\n' + line, "p.jsonl")
    msg = one_line(exc)
    assert "p.jsonl line 2" in msg and needle in msg


def test_csv_prompt_column_and_row_variables():
    p = parse_csv('prompt,lang,system\n"Say hi in {{lang}}, please",French,Be brief\nplain,,\n')
    assert [x.text for x in p] == ["Say hi in {{lang}}, please", "plain"]
    assert p[0].variables == {"lang": "French"} and p[0].system == "Be brief" and p[0].has_system
    assert filled(p[0], {})[0][-1]["content"] == "Say hi in French, please"
    assert p[1].system is None  # an empty system cell: no system prompt


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("question\nhi\n", "no 'prompt' column"),
        ("prompt,a\nx\n", "1 fields"),
        ("prompt,a,a\nx,1,2\n", "duplicate"),
    ],
)
def test_csv_errors(text, needle):
    with pytest.raises(BatchError) as exc:
        parse_csv(text, "p.csv")
    assert needle in one_line(exc)


def test_read_prompts_by_extension_and_file_errors(tmp_path):
    (tmp_path / "a.jsonl").write_text('{"prompt": "j"}\n')
    (tmp_path / "a.csv").write_text("prompt\nc\n")
    (tmp_path / "a.txt").write_text("t\n")
    assert [read_prompts(tmp_path / f"a.{e}")[0].text for e in ("jsonl", "csv", "txt")] == ["j", "c", "t"]
    (tmp_path / "empty.txt").write_text("\n\n")
    (tmp_path / "bin.txt").write_bytes(b"\xff\xfe")
    for name, needle in (("missing.txt", "no such file"), ("empty.txt", "no prompts"), ("bin.txt", "UTF-8")):
        with pytest.raises(BatchError) as exc:
            read_prompts(tmp_path / name)
        assert needle in one_line(exc)


def test_placeholders_unknown_is_one_error_naming_it(tmp_path):
    prompts = parse_text("Hello {{ name }}\nBye {{nme}}\n", "p.txt")
    check_placeholders(prompts[:1], {"name"})
    with pytest.raises(BatchError) as exc:
        check_placeholders(prompts, {"name"}, "p.txt")
    msg = one_line(exc)
    assert "p.txt line 2" in msg and "{{nme}}" in msg and "name" in msg
    (tmp_path / "v.csv").write_text("name\nAda\nBob\n")
    rows = read_vars(tmp_path / "v.csv")
    assert [filled(prompts[0], r)[0][0]["content"] for r in rows] == ["Hello Ada", "Hello Bob"]


def test_seeds():
    assert parse_seeds("1,2, 3,2") == [1, 2, 3]
    assert parse_seeds("4-6") == [4, 5, 6]
    for bad in ("x", "1,,2", "-1", str(2**32)):
        with pytest.raises(BatchError):
            parse_seeds(bad)


def test_plan_every_prompt_row_variant_seed_with_stable_keys():
    prompts = parse_text("a {{x}}\nb\n")
    rows = [{"x": "1"}, {"x": "2"}]
    variants = parse_variants(["temperature=0.2,1.0"], grid=True)
    runs = plan_runs(prompts, rows, variants, [7, 8], default_system="S", base_settings={}, schema=NEUTRAL)
    assert len(runs) == 2 * 2 * 2 * 2
    assert runs[0].id == "p1.v1/A/s7" and runs[-1].id == "p2.v2/B/s8"
    assert len({r.key for r in runs}) == len(runs)
    assert runs[0].settings == {"temperature": 0.2} and runs[0].system == "S"
    again = plan_runs(prompts, rows, variants, [7, 8], default_system="S", base_settings={}, schema=NEUTRAL)
    assert [r.key for r in again] == [r.key for r in runs]  # stable: resume and diff rely on it
    other = plan_runs(prompts, rows, variants, [7, 8], default_system="T", base_settings={}, schema=NEUTRAL)
    assert [r.id for r in other] == [r.id for r in runs]
    assert all(a.key != b.key for a, b in zip(other, runs, strict=True))  # another system prompt
    plain = plan_runs(
        parse_text("a\nb\n"), None, [Variant("")], [1], default_system=None, base_settings={}, schema=NEUTRAL
    )
    assert [r.id for r in plain] == ["p1/s1", "p2/s1"]


def test_plan_variant_system_and_seed_keys(tmp_path):
    (tmp_path / "sys.txt").write_text("From a file")
    variants = parse_variants([f"system=Plain,@{tmp_path / 'sys.txt'}", "seed=3,4"])
    runs = plan_runs(
        parse_text("q\n"), None, variants, [1], default_system="S", base_settings={}, schema=NEUTRAL
    )
    assert [(r.system, r.seed, r.settings) for r in runs] == [("Plain", 3, {}), ("From a file", 4, {})]


def test_plan_refuses_bad_prompt_settings():
    prompts = parse_jsonl('{"prompt": "a", "settings": {"temprature": 1}}', "p.jsonl")
    with pytest.raises(BatchError) as exc:
        plan_runs(
            prompts,
            None,
            [Variant("")],
            [1],
            default_system=None,
            base_settings={},
            schema=NEUTRAL,
            name="p.jsonl",
        )
    assert "p.jsonl line 1" in one_line(exc) and "temperature" in str(exc.value)


def test_reference_in_jsonl_and_csv():
    p = parse_jsonl('{"prompt": "capital of France?", "reference": "Paris."}\n"no reference"\n')
    assert [x.reference for x in p] == ["Paris.", None]
    rows = parse_csv("prompt,reference,topic\nname {{topic}},a known answer,cats\nplain,,x\n")
    assert [x.reference for x in rows] == ["a known answer", None]
    assert rows[0].variables == {"topic": "cats"}  # reference is no placeholder value


@pytest.mark.parametrize(
    ("line", "needle"),
    [
        ('{"prompt": "p", "reference": 3}', "'reference' must be non-empty text"),
        ('{"prompt": "p", "checks": 1}', "checks"),
    ],
)
def test_reference_and_checks_errors(line, needle):
    with pytest.raises(BatchError) as exc:
        parse_jsonl(line, "p.jsonl")
    assert needle in one_line(exc)


def test_a_prompts_own_seed_replaces_the_runs_seeds():
    prompts = parse_jsonl('{"prompt": "kept", "seed": 7}\n"plain"\n')
    runs = plan_runs(
        prompts, None, [Variant("")], [1, 2], default_system=None, base_settings={}, schema=NEUTRAL
    )
    assert [r.id for r in runs] == ["p1/s7", "p2/s1", "p2/s2"]
    for bad in ('{"prompt": "p", "seed": -1}', '{"prompt": "p", "seed": true}'):
        with pytest.raises(BatchError) as exc:
            parse_jsonl(bad, "p.jsonl")
        assert "'seed' must be an integer" in one_line(exc)


def test_checks_in_text_and_csv_files():
    p = parse_text('one\n@check contains=a finish=stop\n"""\ntwo\n"""\n@check regex="^b"\n')
    assert p[0].checks == [{"contains": "a"}, {"finish": "stop"}] and p[1].checks == [{"regex": "^b"}]
    with pytest.raises(UserError) as exc:
        parse_text("@check contains=a\nprompt\n", "p.txt")
    assert "p.txt line 1" in one_line(exc)
    rows = parse_csv('prompt,checks\nq,"contains=x max_tokens=3"\nr,\n')
    assert rows[0].checks == [{"contains": "x"}, {"max_tokens": 3}] and rows[1].checks == []


def test_toml_suite(tmp_path):
    suite = tmp_path / "suite.toml"
    suite.write_text(
        "[[checks]]\nmax_tokens = 64\n\n"
        '[[prompts]]\nprompt = "capital of France?"\nreference = "Paris."\nseed = 3\n'
        '  [[prompts.checks]]\n  contains = "Paris"\n\n'
        '[[prompts]]\nmessages = [{role = "user", content = "hi"}]\nsystem = "Be brief."\n'
        "settings = {temperature = 0.2}\n"
    )
    first, second = read_prompts(suite)
    assert (first.text, first.reference, first.seed, first.line) == ("capital of France?", "Paris.", 3, 4)
    assert first.checks == [{"contains": "Paris"}, {"max_tokens": 64}]
    assert (second.system, second.settings, second.checks, second.line) == (
        "Be brief.",
        {"temperature": 0.2},
        [{"max_tokens": 64}],
        11,
    )
    for text, needle in (
        ("[[prompts]\n", "not TOML"),
        ("[[prompt]]\nprompt = 'x'\n", "unknown key(s) prompt"),
        ("[[prompts]]\nprompt = 'x'\ncolour = 1\n", "line 1: unknown field(s) colour"),
    ):
        suite.write_text(text)
        with pytest.raises(BatchError) as exc:
            read_prompts(suite)
        assert needle in one_line(exc)
