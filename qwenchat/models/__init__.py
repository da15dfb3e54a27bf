"""Models: what the user names (`loader.resolve`), where it comes from (`hub`, `demo`), and loading it.

LoadError lives here, below both `hub` and `loader`, so that neither has to import the other's error.
"""

from __future__ import annotations

from qwenchat.errors import UserError


class LoadError(UserError):
    """A model that cannot be found or loaded; the message is one line for the user."""
