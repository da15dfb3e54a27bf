"""`:score TEXT|@FILE`: the command layer on the fake engine (one token per word, each 40%). What the engines
compute is tested in tests/probs/test_score.py (tiny model, scripted server) and test_score_demo.py."""

from __future__ import annotations

import math
import threading

import pytest

from qwenchat.conversation.model import Message
from qwenchat.conversation.store import SessionStore
from qwenchat.engines.api import GenerationRequest, SupportsScore
from qwenchat.probs.record import Alt, TokenProb
from tests.support.fakes import FakeEngine


class ScoringFake(FakeEngine):
    """The fake engine with SupportsScore: each word of the answer is a token of probability 0.4."""

    def __init__(self) -> None:
        super().__init__()
        self.scored: list[tuple[GenerationRequest, str]] = []

    def score(self, request: GenerationRequest, answer: str, cancel: threading.Event) -> list[TokenProb]:
        self.scored.append((request, answer))
        words = answer.split(" ")
        texts = [w if i == 0 else " " + w for i, w in enumerate(words)]
        lp = math.log(0.4)
        return [TokenProb(i, t, lp, [Alt(t, i, lp)]) for i, t in enumerate(texts)]


@pytest.fixture
def app(out, tmp_path, make_repl):
    repl = make_repl(ScoringFake(), out, store=SessionStore(tmp_path / "sessions"))
    repl.session.conversation.messages += [
        Message("user", "Capital of France?"),
        Message("assistant", "Paris."),
    ]
    return repl


def said(app) -> str:
    return app.renderer.buf.getvalue()


def test_score_shows_total_heat_map_and_summary_and_changes_nothing(app):
    assert isinstance(app.session.engine, SupportsScore)
    before = list(app.session.conversation.messages)
    app.handle_line(":score It is Lyon")
    out = said(app)
    total = 3 * math.log(0.4)
    assert f"3 tokens · total logprob {total:.3f}" in out
    assert f"mean logprob {math.log(0.4):.3f} · perplexity 2.50" in out
    assert "It⟨#1 40%⟩ is⟨#2 40%⟩ Lyon⟨#3 40%⟩" in out  # the heat map as :probs draws it
    assert "least confident: #1 It 40%" in out
    request, answer = app.session.engine.scored[-1]
    assert answer == "It is Lyon"
    assert request.messages[-1] == {"role": "user", "content": "Capital of France?"}  # the answer left out
    assert request.probs_k >= 1
    assert app.session.conversation.messages == before and not app.failed


def test_score_reads_a_file_without_its_final_newline(app, tmp_path):
    path = tmp_path / "ref.txt"
    path.write_text("Paris is the capital.\n")
    app.handle_line(f":score @{path}")
    assert app.session.engine.scored[-1][1] == "Paris is the capital."
    assert "4 tokens" in said(app)


def test_hostile_bytes_in_a_file_never_reach_the_terminal(app, tmp_path):
    path = tmp_path / "evil.txt"
    path.write_text("ok \x1b]0;pwned\x07 \x1b[2J done")
    app.handle_line(f":score @{path}")
    out = said(app)
    assert "\x1b" not in out and "\x07" not in out and "␛]0;pwned␇" in out


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (":score", "usage: :score TEXT or :score @FILE"),
        (":score @", "usage: :score @FILE"),
        (":score @/no/such/file.txt", "no such file: /no/such/file.txt"),
        (":score @{dir}", "is a directory"),
        (":score @{binary}", "is a binary file, not text"),
        (":score @{empty}", "is empty: nothing to score"),
    ],
)
def test_bad_input_is_one_line_and_changes_nothing(app, tmp_path, line, expected):
    (tmp_path / "bin.dat").write_bytes(b"\x00\x01\x02PNG")
    (tmp_path / "empty.txt").write_text("\n")
    line = line.format(dir=tmp_path, binary=tmp_path / "bin.dat", empty=tmp_path / "empty.txt")
    before = list(app.session.conversation.messages)
    app.handle_line(line)
    errors = [x for x in said(app).splitlines() if x.startswith("error:")]
    assert len(errors) == 1 and expected in errors[0], said(app)
    assert app.session.engine.scored == [] and app.session.conversation.messages == before


def test_no_message_to_score_against_is_one_line(out, tmp_path, make_repl):
    repl = make_repl(ScoringFake(), out, store=SessionStore(tmp_path / "sessions"))
    repl.handle_line(":score Paris.")
    assert out.buf.getvalue().strip() == "error: there is no message of yours to score an answer to yet"
    assert repl.session.engine.scored == [] and repl.session.conversation.messages == []


def test_an_engine_that_cannot_score_says_so(out, tmp_path, make_repl):
    repl = make_repl(FakeEngine(), out, store=SessionStore(tmp_path / "sessions"))
    repl.session.conversation.messages.append(Message("user", "hi"))
    repl.handle_line(":score hello")
    assert out.buf.getvalue().strip() == "error: fake-model cannot score an answer"
