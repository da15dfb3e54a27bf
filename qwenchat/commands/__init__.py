"""Colon-commands: one registry; each module registers its commands when imported."""

# Registration order is the order :help lists them in.
# isort: off
from qwenchat.commands import display  # noqa: F401
from qwenchat.commands import conversation  # noqa: F401
from qwenchat.commands import output  # noqa: F401

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
