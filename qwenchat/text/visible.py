"""Control characters made visible: the one sanitising step for text qwenchat did not write itself.

A model, a server (error bodies, model ids), a session file or a config file may carry terminal control
sequences: a window title, an OSC 52 clipboard write, a hidden OSC 8 link, a screen wipe, a CR that lets
`safe` be overwritten by `rm -rf ~`. Such text reaches the terminal, a pipe or an exported file only
through `visible_controls()`, which keeps the text and shows every control character instead of sending it:

* C0 controls and DEL as their Unicode control pictures, one character each (ESC -> ␛, CR -> ␍, BEL -> ␇);
* C1 controls (U+0080-U+009F, which a UTF-8 terminal obeys as well) as ␛ and their 7-bit letter, which is
  what they stand for in ECMA-48 (CSI U+009B -> ␛[, OSC U+009D -> ␛]);
* lone surrogates (no terminal can encode them) as U+FFFD;
* newlines and tabs stay, and a CR LF line ending is a newline.

Replacing character by character makes it safe on a stream however the text is cut into chunks
(`VisibleStream` only holds back a final CR, in case an LF follows).
"""

from __future__ import annotations

import re

CR_PICTURE = "\u240d"  # ␍
_TABLE: dict[int, str] = {c: chr(0x2400 + c) for c in range(0x20) if chr(c) not in "\t\n"}
_TABLE[0x7F] = "\u2421"  # ␡
_TABLE.update({c: "\u241b" + chr(c - 0x40) for c in range(0x80, 0xA0)})
_TABLE.update({c: "\ufffd" for c in range(0xD800, 0xE000)})
_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff]")


def visible_controls(text: str) -> str:
    """`text` with no control character left but newline and tab (see the module docstring)."""
    if not _UNSAFE.search(text):
        return text
    return text.replace("\r\n", "\n").translate(_TABLE)


class VisibleStream:
    """`visible_controls` for text that arrives in pieces: a CR at the end of a piece waits for the next one,
    so a CR LF cut in two is still one newline."""

    def __init__(self) -> None:
        self._cr = False

    def feed(self, text: str) -> str:
        if self._cr:
            text = "\r" + text
            self._cr = False
        if text.endswith("\r"):
            text = text[:-1]
            self._cr = True
        return visible_controls(text)

    def flush(self) -> str:
        """What is still held (a final CR, shown as ␍)."""
        held, self._cr = self._cr, False
        return CR_PICTURE if held else ""
