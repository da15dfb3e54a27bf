"""Which chat template a model runs with: its own, one from a file (`--chat-template FILE`, as llama.cpp and
vLLM take), or plain completion (`--no-template`, and what a model without a template gets, with a notice).

Plain completion is a template too: the conversation's texts one after another, nothing between them, so
each message continues the text and `:template` shows exactly what is sent. Both in-process engines render
it as they render any other template, and nothing else in the chat has to know."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qwenchat.errors import UserError

PLAIN = "{% for message in messages %}{{ message['content'] }}{% endfor %}"
MAX_TEMPLATE_BYTES = 1 << 20  # chat templates are kilobytes; a bigger file is not one


class TemplateError(UserError):
    """A --chat-template file that cannot be used: one line naming the file."""


@dataclass(frozen=True)
class TemplateChoice:
    source: str  # the Jinja template the engine renders
    plain: bool  # plain completion: no roles, no generation prompt
    notice: str | None = None  # what the user is told at start, when anything


def plain_template(bos: str = "") -> str:
    """The plain template; `bos` is the text of the BOS token where the tokenizer starts every text with it
    (a base model was trained on text that starts so)."""
    if not bos:
        return PLAIN
    return "{% raw %}" + bos + "{% endraw %}" + PLAIN


def leading_bos(tokenizer: Any) -> str:
    """The BOS token's text where a transformers tokenizer starts every text with it, else ""."""
    bos_id = getattr(tokenizer, "bos_token_id", None)
    if bos_id is None:
        return ""
    return tokenizer.bos_token if tokenizer("a")["input_ids"][:1] == [bos_id] else ""


def for_tokenizer(
    tokenizer: Any, name: str, *, file: str | None = None, plain: bool = False
) -> TemplateChoice:
    """`choose` for a transformers tokenizer: its own template, its BOS."""
    own = getattr(tokenizer, "chat_template", None)
    return choose(own, name, file=file, plain=plain, bos=leading_bos(tokenizer))


def read_template_file(path: str | Path) -> str:
    """The text of a Jinja chat template file, checked to parse; TemplateError (one line) when it cannot."""
    import jinja2
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    path = Path(path).expanduser()
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_TEMPLATE_BYTES + 1)
    except OSError as exc:
        raise TemplateError(f"--chat-template {path}: {exc.strerror or exc}") from None
    if len(data) > MAX_TEMPLATE_BYTES:
        raise TemplateError(
            f"--chat-template {path}: over {MAX_TEMPLATE_BYTES >> 20} MB, not a chat template"
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise TemplateError(f"--chat-template {path}: not UTF-8 text (byte {exc.start})") from None
    if not text.strip():
        raise TemplateError(f"--chat-template {path}: the file is empty")
    try:
        ImmutableSandboxedEnvironment(extensions=["jinja2.ext.loopcontrols"]).parse(text)
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(f"--chat-template {path}: line {exc.lineno}: {exc.message}") from None
    return text


def choose(
    own: str | None, name: str, *, file: str | None = None, plain: bool = False, bos: str = ""
) -> TemplateChoice:
    """The template to run `name` with: plain when asked (`--no-template`), else the file's
    (`--chat-template`), else the model's own, else plain with a notice."""
    if plain:
        return TemplateChoice(plain_template(bos), True)
    if file is not None:
        return TemplateChoice(file, False)
    if own:
        return TemplateChoice(own, False)
    notice = (
        f"{name} has no chat template (a base model?): plain completion, each message continues the text "
        "(:template shows it); --chat-template FILE gives it one"
    )
    return TemplateChoice(plain_template(bos), True, notice)
