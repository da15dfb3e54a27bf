"""Colon-commands: one registry; each module registers its commands when imported."""

from qwenchat.commands import conversation  # noqa: F401  (registers its commands)
from qwenchat.commands.registry import REGISTRY, Command, CommandError, Registry, command

__all__ = ["REGISTRY", "Command", "CommandError", "Registry", "command"]
