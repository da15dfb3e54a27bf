"""`:probs`, `:alt`, `:branch`, the heat map, the session format and the JSON export: the command layer on
the fake engine with hand-made token records (what the engines record is tested on the real model in
test_probs_demo.py, test_probs_llamacpp.py and test_probs_openai.py)."""

from __future__ import annotations

import io
import json
import math

import pytest
from rich.console import Console

from qwenchat.conversation.fields import message_to_dict
from qwenchat.conversation.file import conversation_from_dict, conversation_to_dict
from qwenchat.conversation.model import Conversation, ConversationFormatError, Message
from qwenchat.conversation.store import SessionStore
from qwenchat.probs.record import Alt, TokenProb, summarize
from qwenchat.ui.probs import heat_text
from qwenchat.ui.render import Renderer
from tests.support.fakes import FakeEngine


def tp(tok_id: int, text: str, p: float, alts: list[tuple[str, int, float]]) -> TokenProb:
    return TokenProb(tok_id, text, math.log(p), [Alt(t, i, math.log(q)) for t, i, q in alts])


PROBS = [
    tp(1, "The", 0.95, [("The", 1, 0.95), ("A", 2, 0.03)]),
    tp(3, " sky", 0.30, [(" sea", 4, 0.5), (" sky", 3, 0.30)]),
    tp(5, "\n", 0.8, [("\n", 5, 0.8), (" is", 6, 0.1)]),
]


@pytest.fixture
def app(out, tmp_path, make_repl):
    repl = make_repl(FakeEngine(), out, store=SessionStore(tmp_path / "sessions"))
    msgs = repl.session.conversation.messages
    msgs += [Message("user", "Describe it."), Message("assistant", "The sky\n", probs=list(PROBS))]
    return repl


def said(app) -> str:
    return app.renderer.buf.getvalue()


def test_probs_heat_map_without_colour_marks_low_tokens_and_summarises(app):
    app.handle_line(":probs")
    out = said(app)
    assert "The sky⟨#2 30%⟩\n" in out  # the low one carries its index; the likely ones do not
    s = summarize(PROBS)
    assert f"3 tokens · mean logprob {s.mean_logprob:.3f} · perplexity {s.perplexity:.2f}" in out
    assert "least confident: #2 ␣sky 30% · #3 \\n 80% · #1 The 95%" in out
    assert "below 50%" in out and "raw distribution" in out


def test_heat_map_with_colour_styles_by_band():
    text = heat_text(PROBS, color=True)
    styles = {text.plain[s.start : s.end]: str(s.style) for s in text.spans}
    assert styles[" sky"] == "black on #ffb060" and styles["\n"] == "black on #e4e4a0"
    buf = io.StringIO()
    console = Console(file=buf, force_terminal=True, color_system="truecolor", width=80)
    Renderer(console).token_probs(PROBS)
    assert "\x1b[" in buf.getvalue() and "legend:" in buf.getvalue()


def test_heat_map_shows_control_characters_visibly(app):
    app.session.conversation.messages[-1].probs = [tp(9, "\x1b]0;pwned\x07", 0.2, [])]
    app.handle_line(":probs")
    assert "\x1b" not in said(app) and "␛]0;pwned␇" in said(app)


def test_alt_lists_candidates_and_marks_the_chosen_one(app):
    app.handle_line(":alt 2")
    lines = said(app).splitlines()
    assert lines[-3] == "token 2: the model's raw distribution (before temperature, top-k, top-p)"
    assert lines[-2].split() == ["1", "␣sea", "50%"] and lines[-1].split() == ["→", "2", "␣sky", "30%"]


@pytest.mark.parametrize(
    ("line", "error"),
    [
        (":alt 4", "token from 1 to 3, got '4'"),
        (":alt", "usage: :alt N (N from 1 to 3)"),
        (":branch 2", 'usage: :branch N K or :branch N "text"'),
        (":branch 2 3", "alternative from 1 to 2, got '3'"),
        (":branch 0 1", "token from 1 to 3, got '0'"),
        (':branch 2 ""', 'the forced text is empty; :branch N "text"'),
        (":probs on 0", "k from 1 to 20, got '0'"),
        (":probs sometimes", "usage: :probs [on [K]|off] (K from 1 to 20)"),
    ],
)
def test_bad_arguments_are_one_line_and_change_nothing(app, line, error):
    before = [message_to_dict(m) for m in app.session.conversation.messages]
    app.handle_line(line)
    assert said(app).strip().splitlines()[-1] == f"error: {error}"
    assert [message_to_dict(m) for m in app.session.conversation.messages] == before
    assert app.session.probs_k == 0


def test_probs_on_off_and_no_data(app):
    app.handle_line(":probs on 7")
    assert app.session.probs_k == 7
    app.handle_line("next")  # the fake engine sends no records: the answer has none, and says so
    assert app.session.conversation.messages[-1].probs is None
    app.handle_line(":alt 1")
    assert "error: the last answer has no token probabilities; recording is on, then :retry" in said(app)
    app.handle_line(":probs off")
    assert app.session.probs_k == 0 and app.session.engine.requests[-1].probs_k == 7


def test_branch_by_text_continues_a_final_message_and_undo_restores(app):
    old = app.session.conversation.messages[-1]
    app.session.engine.enqueue(["blue."])
    app.handle_line(':branch 2 " ocean"')
    req = app.session.engine.requests[-1]
    assert req.continue_final and req.messages[-1] == {"role": "assistant", "content": "The ocean"}
    new = app.session.conversation.messages[-1]
    assert new.content.startswith("The ocean") and new.replaces is old
    assert new.probs is None  # recording is off (and the fake engine records nothing)
    app.handle_line(":undo")
    assert app.session.conversation.messages[-1] is old
    assert "the answer it replaced is back" in said(app)


def test_export_writes_the_token_data_beside(app, tmp_path):
    app.handle_line(f":export {tmp_path / 'chat.md'}")
    doc = json.loads((tmp_path / "chat.tokens.json").read_text())
    assert doc["format"] == "qwenchat-tokens/1" and doc["answers"][0]["answer"] == 1
    assert [p["text"] for p in doc["answers"][0]["probs"]] == ["The", " sky", "\n"]
    app.handle_line(f":export {tmp_path / 'chat.md'}")
    assert "exists" in said(app).splitlines()[-1]


# -- the session format -----------------------------------------------------------------------------
def test_format_2_round_trip_and_format_1_still_loads():
    old = Message("assistant", "The sea", probs=[PROBS[0]])
    conv = Conversation(
        messages=[Message("user", "hi"), Message("assistant", "The sky\n", False, PROBS, old)]
    )
    data = json.loads(json.dumps(conversation_to_dict(conv)))
    assert data["version"] == 2
    back = conversation_from_dict(data)
    assert back.messages[-1].probs == PROBS and back.messages[-1].replaces.probs == [PROBS[0]]
    v1 = {"version": 1, "system": None, "messages": [{"role": "user", "content": "hi"}]}
    assert conversation_from_dict(v1).messages[0].probs is None


def _bad(**fields):
    return {"version": 2, "messages": [{"role": "assistant", "content": "x", **fields}]}


def _deep(n):
    node: dict = {"content": "x"}
    for _ in range(n):
        node = {"content": "x", "replaces": node}
    return node["replaces"]


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (_bad(probs={}), "'probs' must be a list"),
        (_bad(probs=[{"id": 1, "text": "x", "logprob": 0.5, "top": []}]), "a logprob must be a number ≤ 0"),
        (_bad(probs=[{"id": "1", "text": "x", "logprob": -1, "top": []}]), "'id' must be an integer"),
        (_bad(probs=[{"id": 1, "text": "x", "logprob": -1, "top": [["x", 1]]}]), "[text, id, logprob]"),
        (_bad(probs=[{"id": 1, "text": "x", "logprob": -1, "source": "vibes"}]), "unknown 'source'"),
        (_bad(replaces="old"), "'replaces' must be an earlier answer"),
        (_bad(replaces=_deep(150)), "more than 100 replaced answers"),
        (
            {"version": 2, "messages": [{"role": "user", "content": "x", "replaces": {"content": "y"}}]},
            "only an answer can carry",
        ),
        ({"version": 2, "messages": [{"role": "user", "content": "x", "probs": []}]}, "only an answer"),
    ],
)
def test_hostile_token_data_is_one_format_error(data, error):
    with pytest.raises(ConversationFormatError, match=None) as info:
        conversation_from_dict(data)
    assert error in str(info.value) and str(info.value).startswith("message 1")
