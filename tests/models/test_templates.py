"""Which chat template a model runs with (models/templates.py): its own, a file's (--chat-template), or plain
completion (--no-template; automatic, with a notice, for a model without one, such as a base model)."""

from __future__ import annotations

import copy

import pytest

from qwenchat.chat.session import ChatSession
from qwenchat.conversation.model import Conversation
from qwenchat.models import templates
from qwenchat.models.templates import TemplateError, choose, plain_template, read_template_file
from tests.support.recording import recorded

CUSTOM = (
    "{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}[assistant] {% endif %}"
)


def test_choose_takes_the_flag_then_the_file_then_the_model_s_own_then_plain_with_a_notice():
    assert choose("OWN", "m", plain=True) == templates.TemplateChoice(templates.PLAIN, True)
    assert choose("OWN", "m", file="FILE") == templates.TemplateChoice("FILE", False)
    assert choose("OWN", "m") == templates.TemplateChoice("OWN", False)
    auto = choose(None, "base.gguf", bos="<bos>")
    assert auto.plain and auto.source == plain_template("<bos>")
    assert auto.notice.startswith("base.gguf has no chat template") and "--chat-template FILE" in auto.notice


@pytest.mark.parametrize(
    "content, problem",
    [
        (None, "No such file"),
        (b"\xff\xfe{{ x }}", "not UTF-8 text (byte 0)"),
        (b"{% for m in messages %}", "line 1: "),
        (b"  \n", "the file is empty"),
        (b"x" * (templates.MAX_TEMPLATE_BYTES + 1), "over 1 MB"),
    ],
    ids=["missing", "not-utf8", "syntax", "empty", "huge"],
)
def test_a_bad_template_file_is_one_line_naming_it(tmp_path, content, problem):
    path = tmp_path / "t.jinja"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(TemplateError) as info:
        read_template_file(path)
    line = str(info.value)
    assert line.startswith(f"--chat-template {path}: ") and problem in line and "\n" not in line


def test_a_template_file_is_read_whole(tmp_path):
    path = tmp_path / "t.jinja"
    path.write_text(CUSTOM)
    assert read_template_file(path) == CUSTOM


# -- on a real tokenizer (the demo's), a tiny model under it ----------------------------------------------
@pytest.fixture
def engine_with(tiny_model):
    from qwenchat.engines.transformers.engine import TransformersEngine

    model, tok = tiny_model

    def make(choice=None, tokenizer=tok):
        return TransformersEngine(model, tokenizer, "tiny", template_choice=choice)

    return make


def chat(engine, *texts: str) -> tuple[ChatSession, list[str]]:
    """Send each text greedily (4 new tokens); the prompts the engine rendered, one per turn."""
    session = ChatSession(engine, conversation=Conversation(system=None))
    session.settings.apply("max_new_tokens=4 do_sample=false")
    with recorded(engine, engine.render_prompt) as prompts:
        for text in texts:
            assert session.send(text).kept
    return session, prompts


def test_plain_completion_sends_the_texts_one_after_another(engine_with, tiny_model):
    _, tok = tiny_model
    engine = engine_with(templates.for_tokenizer(tok, "tiny", plain=True))
    assert engine.template_choice.plain and engine.template_choice.notice is None  # asked for: no notice
    session, prompts = chat(engine, "Once upon a time", " there was")
    first = session.conversation.messages[1].content
    assert prompts == ["Once upon a time", "Once upon a time" + first + " there was"]
    assert engine.template_variables() == {"messages"}  # no roles, no switch, no tools
    assert tok.chat_template  # the shared tokenizer keeps its own template


def test_a_tokenizer_without_a_template_runs_plain_with_a_notice(engine_with, tiny_model):
    _, tok = tiny_model
    bare = copy.deepcopy(tok)
    bare.chat_template = None
    engine = engine_with(tokenizer=bare)
    assert engine.template_choice.plain and engine.template_choice.notice.startswith(
        "tiny has no chat template"
    )
    _, prompts = chat(engine, "def add(a, b):")
    assert prompts == ["def add(a, b):"]


def test_a_chat_template_file_replaces_the_model_s_own(engine_with, tiny_model, tmp_path):
    _, tok = tiny_model
    path = tmp_path / "t.jinja"
    path.write_text(CUSTOM)
    engine = engine_with(templates.for_tokenizer(tok, "tiny", file=read_template_file(path)))
    session, prompts = chat(engine, "hi")
    assert prompts == ["[user] hi\n[assistant] "]
