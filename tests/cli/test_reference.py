"""docs/options.md and docs/commands.md are generated from the parser and the command registry: they say
every option and every command, and the committed files are what the code renders now."""

from __future__ import annotations

import argparse
from pathlib import Path

from qwenchat.cli import reference
from qwenchat.cli.parser import build_parser, subparsers
from qwenchat.commands import REGISTRY


def test_the_generated_docs_are_up_to_date():
    stale = reference.stale(Path(__file__).resolve().parents[2])
    assert not stale, f"{', '.join(map(str, stale))} out of date: run `{reference.REGENERATE}` and commit"


def test_options_md_has_every_option_of_every_command():
    text = reference.render_options()
    chat = build_parser()
    for title, parser in [
        ("qwenchat (the chat)", chat),
        *((f"qwenchat {n}", p) for n, p in subparsers(chat).items()),
    ]:
        section = text.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]
        assert f"usage: {parser.usage}" in section
        for action in parser._actions:
            if action.help == argparse.SUPPRESS or isinstance(action, argparse._SubParsersAction):
                continue
            for flag in action.option_strings:
                assert f"`{flag}" in section, (title, flag)
            assert reference._cell(reference._text(action.help or "")) in section, (title, action.dest)
    assert "`--batch" not in text and "`--diff" not in text  # the old spellings are not documented


def test_commands_md_has_every_command_with_its_aliases():
    text = reference.render_commands()
    for cmd in REGISTRY:
        assert f"`{cmd.usage.replace('|', chr(92) + '|')}`" in text, cmd.name
        for alias in cmd.aliases:
            assert f"`:{alias}`" in text, alias


def test_code_spans_hold_backticks_and_cells_hold_pipes():
    assert reference._code("a`b") == "``a`b``"
    assert reference._code("`x") == "`` `x ``"
    assert reference._cell("a|b\n c") == "a\\|b c"


def test_check_mode_reports_a_stale_file(tmp_path, capsys):
    assert reference.main(["--root", str(tmp_path)]) == 0
    assert reference.main(["--root", str(tmp_path), "--check"]) == 0
    (tmp_path / reference.OPTIONS).write_text("old\n")
    assert reference.main(["--root", str(tmp_path), "--check"]) == 1
    assert f"run {reference.REGENERATE}" in capsys.readouterr().err
