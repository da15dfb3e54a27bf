""":image: images attached to the next message (qwenchat/images reads and checks them)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from qwenchat.commands.attach import file_args
from qwenchat.commands.registry import CommandContext, command
from qwenchat.paths import expand_user

if TYPE_CHECKING:
    from qwenchat.chat.session import ChatSession
    from qwenchat.ui.render import Renderer


@command(
    "image",
    "img",
    usage=":image PATH...",
    help="Attach images (PNG, JPEG, WebP, GIF) to your next message; needs a vision chat model.",
    example=":image photo.jpg",
)
def cmd_image(ctx: CommandContext, args: str) -> None:
    pending = [r.label for r in ctx.session.images]
    usage = "usage: :image PATH... (the images go with your next message)"
    names = file_args(ctx, "image", args, pending, usage)
    if names:
        attach_images(ctx.session, ctx.renderer, names)


def attach_images(session: ChatSession, renderer: Renderer, names: list[str]) -> None:
    """Read, check and attach images (one bad file: none is added), then show them; `--image` uses it too."""
    from qwenchat.chat.images import refuse_unless_images
    from qwenchat.images.load import read_image

    refuse_unless_images(session.engine)  # before reading: a text model gets one line, whatever the files
    refs = [read_image(expand_user(name), name) for name in names]
    tokens = session.attach_images(refs)
    renderer.images_attached(refs, tokens)
    renderer.hint("type your message: the images go with it")
