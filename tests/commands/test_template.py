""":template shows the exact prompt the next message will be sent with: the files read for it, a pending
prefill, the tools and the reasoning switch, on the demo model's real chat template (a tiny model under
it)."""

from __future__ import annotations

import json

import pytest

from tests.support.recording import recorded


@pytest.fixture
def engine(tiny_model):
    from qwenchat.engines.transformers.engine import TransformersEngine

    model, tok = tiny_model
    return TransformersEngine(model, tok, "tiny")


def shown_template(app, out) -> str:
    before = len(out.buf.getvalue())
    app.handle_line(":template")
    return out.buf.getvalue()[before:]


def sent_prompt(app, engine, text: str) -> str:
    """What the engine is asked to answer when `text` is sent now."""
    with recorded(engine, engine.render_prompt) as seen:
        app.handle_line(text)
    return seen[0]


def test_template_shows_pending_reads_and_prefill_exactly_as_sent(engine, out, make_repl, tmp_path):
    note = tmp_path / "note.txt"
    note.write_text("The meeting moved to Thursday, room 4.\n")
    tools = tmp_path / "tools.json"
    fn = {"name": "lookup", "description": "d", "parameters": {"type": "object", "properties": {}}}
    tools.write_text(json.dumps([{"type": "function", "function": fn}]))
    app = make_repl(engine, out)
    app.session.settings.apply("max_new_tokens=2 do_sample=false")
    for line in [f":read {note}", ":prefill Sure, here it is:", f":tools {tools}"]:
        app.handle_line(line)
    shown = shown_template(app, out)
    assert "The meeting moved to Thursday, room 4." in shown and "<your next message>" in shown
    assert "Sure, here it is:" in shown and '"name": "lookup"' in shown
    assert "pending :read: " in shown and "pending :prefill: " in shown
    prompt = shown.split("pending :read:")[0].rstrip("\n")
    # The prefill opens the answer: the prompt ends inside the assistant turn, not after it.
    assert prompt.endswith("<|im_start|>assistant\nSure, here it is:")
    assert sent_prompt(app, engine, "<your next message>").rstrip("\n") == prompt


def test_template_without_anything_pending_is_unchanged(engine, out, make_repl):
    app = make_repl(engine, out)
    shown = shown_template(app, out)
    assert shown.rstrip("\n").endswith("<your next message><|im_end|>\n<|im_start|>assistant")
    assert "pending" not in shown
