"""What a chat template writes by itself: the system prompt it inserts when a conversation has none."""

from __future__ import annotations

import copy
import re

from qwenchat.engines.api import Engine, GenerationRequest

_PROBE = "qwenchat-system-probe-5f1c"  # a system message no template writes by itself


def inserted_system(engine: Engine, plain: GenerationRequest) -> str | None:
    """The system text the template puts before `plain` (a request without a system message); None when it
    inserts none, or when that cannot be told (a server applies the template)."""
    probe = copy.copy(plain)
    probe.messages = [{"role": "system", "content": _PROBE}, *plain.messages]
    try:
        without, with_probe = engine.render_prompt(plain), engine.render_prompt(probe)
    except Exception:  # NotImplementedError (remote), or a template that takes no system turn
        return None
    head, found, tail = with_probe.partition(_PROBE)
    if not found:
        return None
    # The prompt without a system message, read against the system turn the template writes.
    m = re.fullmatch(re.escape(head) + "(.+?)" + re.escape(tail), without, re.DOTALL)
    return m.group(1) if m else None
