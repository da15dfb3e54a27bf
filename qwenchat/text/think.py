"""Split a streamed answer into thinking and answer text, whatever the chunk boundaries.

Reasoning models wrap their thoughts in `<think>…</think>`. Three shapes occur in practice:

* the model writes `<think>` itself (Qwen3): the block opens at the start of the output;
* the chat template ends the prompt with `<think>` (DeepSeek-R1, QwQ, Qwen3-Thinking-2507): the output
  starts inside the block and only `</think>` appears;
* no thinking at all.

`ThinkSplitter` turns chunks into events (`open`, `think`, `close`, `answer`, `retro`) in order. Tags may
arrive split across chunks (`<thi` + `nk>`): a suffix that could still become a tag is held back until the
next chunk decides it. Only a `<think>` before any other text opens a block; later tags are answer text.

When nobody says whether the output starts inside a block (`think_open=None`), the splitter holds the first
`hold_chars` characters back: a `</think>` among them makes them thinking. Past the hold they are released
as answer; a `</think>` that still turns up later (before any think block was seen) gives a `retro` event:
the answer so far was in fact thinking. `prompt_opens_think()` lets the caller decide up front from the
rendered prompt instead.
"""

from __future__ import annotations

from dataclasses import dataclass

OPEN = "<think>"
CLOSE = "</think>"


def prompt_opens_think(prompt: str) -> bool:
    """True when a rendered chat prompt leaves a think block open, so the output starts inside it."""
    return prompt.rstrip().endswith(OPEN)


def partial_suffix(text: str, tag: str) -> int:
    """Length of the longest suffix of `text` that is a proper prefix of `tag` (a tag that may be split)."""
    for n in range(min(len(tag) - 1, len(text)), 0, -1):
        if text.endswith(tag[:n]):
            return n
    return 0


@dataclass(frozen=True)
class ThinkEvent:
    """kind: open (implicit=True when no tag was seen) | think | close | answer | retro."""

    kind: str
    text: str = ""
    implicit: bool = False


class ThinkSplitter:
    """Incremental `<think>` splitter; O(len(chunk)) per feed apart from the bounded hold."""

    def __init__(self, think_open: bool | None = None, hold_chars: int = 0) -> None:
        self.hold_chars = hold_chars
        self._buf = ""
        self._searched = 0  # in the undecided state, `_buf[:_searched]` holds no CLOSE
        self._strip = False  # drop the whitespace that follows `</think>`
        self._retro = False  # a later `</think>` means the answer so far was thinking
        self._at_start = (
            True  # nothing but whitespace yet in this think block (a doubled `<think>` is dropped)
        )
        self.think_seen = False
        self.state = "undecided"
        self._pending_open: ThinkEvent | None = None
        if think_open:
            self.state = "think"
            self.think_seen = True
            self._pending_open = ThinkEvent("open", implicit=True)
        elif think_open is False:
            self.state = "start"

    @property
    def held(self) -> str:
        """Text received but not yet classified (undecided hold or a partial tag)."""
        return self._buf

    @property
    def undecided(self) -> bool:
        return self.state == "undecided"

    def feed(self, text: str) -> list[ThinkEvent]:
        self._buf += text
        return self._take(final=False)

    def finish(self) -> list[ThinkEvent]:
        """Release everything held (a partial tag is text after all): the final run empties the buffer
        and always decides between thinking and answer."""
        return self._take(final=True)

    def _take(self, final: bool) -> list[ThinkEvent]:
        out: list[ThinkEvent] = []
        if self._pending_open is not None:
            out.append(self._pending_open)
            self._pending_open = None
        self._run(out, final)
        return out

    def _close_at(self, out: list[ThinkEvent], buf: str, i: int) -> None:
        """The think block ends at `buf[i]` (a CLOSE): its last text, the close, then the answer."""
        if i:
            out.append(ThinkEvent("think", buf[:i]))
        out.append(ThinkEvent("close"))
        self._buf = buf[i + len(CLOSE) :]
        self.state = "answer"
        self._strip = True

    def _run(self, out: list[ThinkEvent], final: bool) -> None:
        while True:
            buf = self._buf
            if self.state in ("undecided", "start"):
                s = buf.lstrip()
                if s.startswith(OPEN):
                    self.state = "think"
                    self.think_seen = True
                    self._at_start = True
                    out.append(ThinkEvent("open"))
                    self._buf = s[len(OPEN) :]
                    continue
                if OPEN.startswith(s) and not final:
                    return  # still could become `<think>`
                if self.state == "start":
                    self.state = "answer"
                    continue
                i = buf.find(CLOSE, max(0, self._searched - len(CLOSE)))
                if i >= 0:
                    self.think_seen = True
                    out.append(ThinkEvent("open", implicit=True))
                    self._close_at(out, buf, i)
                    continue
                self._searched = len(buf)
                if len(buf) > self.hold_chars or final:
                    self.state = "answer"
                    self._retro = True
                    continue
                return
            if self.state == "think":
                if self._at_start:
                    s = buf.lstrip()
                    if s.startswith(OPEN):
                        buf = self._buf = s[len(OPEN) :]
                    elif OPEN.startswith(s) and not final:
                        return
                    self._at_start = False
                i = buf.find(CLOSE)
                if i >= 0:
                    self._close_at(out, buf, i)
                    continue
                keep = 0 if final else partial_suffix(buf, CLOSE)
                if len(buf) > keep:
                    out.append(ThinkEvent("think", buf[: len(buf) - keep]))
                    self._buf = buf[len(buf) - keep :]
                return
            # answer
            if self._strip:
                buf = self._buf = buf.lstrip()
                if not buf:
                    return
                self._strip = False
            keep = 0
            if self._retro and not self.think_seen:
                i = buf.find(CLOSE)
                if i >= 0:
                    if i:
                        out.append(ThinkEvent("answer", buf[:i]))
                    out.append(ThinkEvent("retro"))
                    self.think_seen = True
                    self._retro = False
                    self._buf = buf[i + len(CLOSE) :]
                    self._strip = True
                    continue
                keep = 0 if final else partial_suffix(buf, CLOSE)
            if len(buf) > keep:
                out.append(ThinkEvent("answer", buf[: len(buf) - keep]))
                self._buf = buf[len(buf) - keep :]
            return


def split_think(text: str) -> tuple[str | None, str]:
    """(thinking, answer) of a finished reply; thinking is None when the reply has no think block.

    The streaming splitter's decision on the whole text at once: a `<think>` before any other text opens
    the block; otherwise a `</think>` means the output started inside a block the prompt opened (DeepSeek-R1,
    QwQ).
    """
    splitter = ThinkSplitter(None, hold_chars=len(text))  # hold it all: nothing is released before the end
    think: str | None = None
    answer: list[str] = []
    for ev in [*splitter.feed(text), *splitter.finish()]:
        if ev.kind == "open":
            think = think or ""
        elif ev.kind == "think":
            think = (think or "") + ev.text
        elif ev.kind == "answer":
            answer.append(ev.text)
        elif ev.kind == "retro":  # cannot happen with everything held; kept true to the splitter anyway
            think, answer = "".join(answer), []
    return think, "".join(answer)
