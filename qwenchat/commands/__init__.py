"""Colon-commands: one registry; each module registers its commands when imported."""

# Registration order is the order :help lists them in.
# isort: off
from qwenchat.commands import display  # noqa: F401
from qwenchat.commands import settings  # noqa: F401
from qwenchat.commands import reasoning  # noqa: F401
from qwenchat.commands import conversation  # noqa: F401
from qwenchat.commands import sessions  # noqa: F401
from qwenchat.commands import probs  # noqa: F401
from qwenchat.commands import compare  # noqa: F401
from qwenchat.commands import tools  # noqa: F401
from qwenchat.commands import structured  # noqa: F401
from qwenchat.commands import checks  # noqa: F401
from qwenchat.commands import prefill  # noqa: F401
from qwenchat.commands import attach  # noqa: F401
from qwenchat.commands import image  # noqa: F401
from qwenchat.commands import model  # noqa: F401

# isort: on
from qwenchat.commands.registry import (
    REGISTRY,
    Command,
    CommandContext,
    CommandError,
    Registry,
    command,
)

__all__ = ["REGISTRY", "Command", "CommandContext", "CommandError", "Registry", "command"]
