"""Copy to the clipboard with OSC 52 (works over SSH, needs no clipboard program).

The functions return strings; the renderer writes them to the terminal. What to copy (the code blocks of an
answer) comes from `qwenchat.text.fences`.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Mapping

ESC = "\x1b"
BEL = "\x07"
ST = ESC + "\\"  # string terminator
SCREEN_CHUNK = 760  # GNU screen drops DCS strings of 768 bytes or more
LARGE_PAYLOAD = 100_000  # bytes of base64 some terminals (and tmux) silently refuse


def _payload(text: str) -> str:
    return base64.b64encode(text.encode("utf-8", "replace")).decode("ascii")


def osc52(text: str, *, tmux: bool | None = None, screen: bool | None = None) -> str:
    """The escape sequence that puts `text` on the clipboard, wrapped for tmux or screen when inside one.

    tmux and screen default to what TMUX and STY in the environment say.
    """
    seq = f"{ESC}]52;c;{_payload(text)}{BEL}"
    if tmux is None:
        tmux = bool(os.environ.get("TMUX"))
    if screen is None:
        screen = bool(os.environ.get("STY"))
    if tmux:
        # tmux passes a DCS "tmux;" string to the outer terminal once its ESCs are doubled.
        return f"{ESC}Ptmux;{seq.replace(ESC, ESC + ESC)}{ST}"
    if screen:
        # screen passes each DCS string through, but only short ones: split the sequence over several.
        return "".join(f"{ESC}P{seq[i : i + SCREEN_CHUNK]}{ST}" for i in range(0, len(seq), SCREEN_CHUNK))
    return seq


def support_note(env: Mapping[str, str] | None = None, *, text: str | None = None) -> str | None:
    """A short warning when the copy may not arrive (OSC 52 gives no answer to check), else None."""
    env = os.environ if env is None else env
    notes = []
    term = env.get("TERM", "")
    if env.get("TERM_PROGRAM") == "Apple_Terminal":
        notes.append("Apple Terminal ignores OSC 52; iTerm2, WezTerm, kitty or Ghostty support it.")
    elif term == "linux":
        notes.append("The Linux console has no clipboard for OSC 52 to reach.")
    elif term in ("dumb", ""):
        notes.append("This terminal may not support OSC 52 clipboard copies.")
    if env.get("TMUX"):
        notes.append(
            "Inside tmux the copy reaches your terminal only with 'set -g allow-passthrough on' (tmux 3.3+) "
            "or 'set -g set-clipboard on' in ~/.tmux.conf."
        )
    if text is not None and len(_payload(text)) > LARGE_PAYLOAD:
        notes.append(
            f"That is {len(text.encode('utf-8', 'replace')) // 1000} kB; "
            "some terminals ignore clipboard copies over about 100 kB."
        )
    return " ".join(notes) or None
