"""The README documents every command and every option, and its first screen has the two commands."""

from pathlib import Path

from qwenchat.cli.parser import build_parser
from qwenchat.commands import REGISTRY

README = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")


def test_every_command_is_documented():
    for cmd in REGISTRY:
        assert cmd.usage.replace("|", "\\|") in README, cmd.usage


def test_every_option_is_documented():
    for action in build_parser()._actions:
        for flag in action.option_strings:
            assert flag in README, flag


def test_first_screen_has_the_two_commands():
    first = README.split("---", 1)[0]
    blocks = [b for b in first.split("```sh")[1:]]
    assert len(blocks) == 2
    assert "qwenchat --demo" in blocks[0] and "pytest" in blocks[1]
    ci = (Path(__file__).resolve().parent.parent / ".ci" / "run").read_text()
    assert blocks[1].split("```")[0].strip() in ci  # CI runs the README's test command verbatim
