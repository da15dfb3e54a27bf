"""The README is the front door: short, its first screen has the two commands, it lists every command; the
pages in docs/ hold the depth, every option is explained there or in the README, and every link resolves."""

import argparse
import re
from collections.abc import Iterator
from pathlib import Path

from qwenchat.cli.parser import build_parser
from qwenchat.commands import REGISTRY

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
# Generated from the registry and the parser (their own test keeps them fresh); the rest is written by hand.
GENERATED = {"commands.md", "options.md"}
PAGES = sorted(p for p in (ROOT / "docs").glob("*.md") if p.name not in GENERATED)
WRITTEN = README + "".join(p.read_text(encoding="utf-8") for p in PAGES)


def test_readme_is_short():
    assert len(README.splitlines()) <= 320


def test_every_command_is_documented():
    for cmd in REGISTRY:
        assert cmd.usage.replace("|", "\\|") in README, cmd.usage


def _parsers(
    parser: argparse.ArgumentParser, name: str = "qwenchat"
) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    yield name, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub_name, sub in action.choices.items():
                yield from _parsers(sub, f"{name} {sub_name}")


def test_every_option_is_documented():
    """Every flag of every subcommand is explained in the README or a page of docs/ written by hand."""
    for name, parser in _parsers(build_parser()):
        assert name in README, name
        for action in parser._actions:
            for flag in action.option_strings:
                assert flag in WRITTEN, f"{name} {flag}"


def test_first_screen_has_the_two_commands():
    first = README.split("---", 1)[0]
    blocks = [b for b in first.split("```sh")[1:]]
    assert len(blocks) == 2
    assert "qwenchat --demo" in blocks[0] and "pytest" in blocks[1]
    ci = (ROOT / ".ci" / "run").read_text()
    assert blocks[1].split("```")[0].strip() in ci  # CI runs the README's test command verbatim


def _anchors(text: str) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation but '-' dropped, spaces to '-'."""
    return {
        re.sub(r"[^\w\- ]", "", m.group(1).strip().lower()).replace(" ", "-")
        for m in re.finditer(r"^#+ (.+)$", text, re.M)
    }


LINK = re.compile(r"\]\(([^)\s]+)\)")


def test_every_link_resolves():
    """Every relative link and image of the README and docs/ names a file that exists, and a heading in it."""
    for page in [ROOT / "README.md", *PAGES]:
        for target in LINK.findall(page.read_text(encoding="utf-8")):
            if re.match(r"[a-z]+:", target):
                continue  # a web address
            path, _, anchor = target.partition("#")
            file = (page.parent / path).resolve() if path else page
            if file.parent == ROOT / "docs" and file.name in GENERATED and not file.exists():
                continue  # written by the generator, whose own test fails when the file is missing or stale
            assert file.is_file(), f"{page.name}: {target}"
            if anchor:
                assert anchor in _anchors(file.read_text(encoding="utf-8")), f"{page.name}: {target}"


def test_docs_pages_are_linked_from_the_readme():
    for page in PAGES:
        assert f"(docs/{page.name})" in README, page.name
    for name in GENERATED:
        assert f"(docs/{name})" in README, name


def test_every_file_named_exists():
    """A test, a benchmark or a module the docs name by path is there (files move; the docs must follow)."""
    for path in sorted(set(re.findall(r"`((?:tests|bench|qwenchat)/[\w/]+\.py)", WRITTEN))):
        assert (ROOT / path).is_file(), path
