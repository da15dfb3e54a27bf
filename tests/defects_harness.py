"""Drive the real program from outside for the issue-17 regression tests: `python -m qwenchat` in a pipe
or a pseudo-terminal against the scripted OpenAI-compatible server, and a pyte screen to read a terminal.

Kept apart from the program's internals on purpose (they are being restructured); to be merged with
tests/cli_harness.py (issue 18)."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Callable, Iterator, Sequence
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest

from tests.scripted_server import Scripted, delta, sse, start_stream

QWENCHAT = [sys.executable, "-m", "qwenchat"]
ANSI_RE = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[()][0-9A-B]|\x1b[=>78]")


def strip_ansi(text: str) -> str:
    return ANSI_RE.sub("", text).replace("\r", "")


# -- the scripted server -------------------------------------------------------------------------
def usage_event(prompt: int, cached: int, completion: int) -> bytes:
    usage = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cached},
    }
    return sse({"object": "chat.completion.chunk", "choices": [], "usage": usage})


def answers(
    *texts: str,
    finish: str = "stop",
    pieces: int = 1,
    delay: float = 0.0,
    usage: tuple[int, int, int] | None = None,
) -> Callable[[BaseHTTPRequestHandler, dict[str, Any]], None]:
    """Each chat request gets the next text (the last one repeats), streamed in `pieces` line-aligned
    pieces `delay` seconds apart, ending with `finish`."""
    count = {"n": 0}

    def script(h: BaseHTTPRequestHandler, body: dict[str, Any]) -> None:
        text = texts[min(count["n"], len(texts) - 1)]
        count["n"] += 1
        start_stream(h)
        lines = text.splitlines(keepends=True) or [text]
        step = max(1, -(-len(lines) // pieces))
        for i in range(0, len(lines), step):
            h.wfile.write(sse(delta("".join(lines[i : i + step]))))
            h.wfile.flush()
            if delay:
                time.sleep(delay)
        h.wfile.write(sse(delta(None, finish)))
        if usage is not None:
            h.wfile.write(usage_event(*usage))
        h.wfile.write(sse(b"[DONE]"))
        h.wfile.flush()

    return script


def echo(h: BaseHTTPRequestHandler, body: dict[str, Any]) -> None:
    """Answers "Noted: <the last user message>", so a saved answer shows which message it belongs to."""
    last = next((m["content"] for m in reversed(body["messages"]) if m["role"] == "user"), "")
    answers(f"Noted: {last}")(h, body)


def scripted_server() -> Iterator[Scripted]:
    """Body of a fixture: `server = pytest.fixture(scripted_server)`."""
    server = Scripted()
    server.script = answers("Hello there.")
    yield server
    server.close()


# -- pipe mode -----------------------------------------------------------------------------------
def run_pipe(
    stdin: str, *args: str, env: dict[str, str] | None = None, timeout: float = 90
) -> subprocess.CompletedProcess:
    """qwenchat with stdin and stdout as pipes; data and config dirs are the test's (conftest sets them)."""
    return subprocess.run(
        [*QWENCHAT, *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def session_files() -> list[Path]:
    return sorted((Path(os.environ["QWENCHAT_DATA_DIR"]) / "sessions").glob("*.json"))


def session_texts() -> dict[str, str]:
    """Every autosaved session: its file name -> the text of all its messages."""
    out = {}
    for path in session_files():
        data = json.loads(path.read_text(encoding="utf-8"))
        conv = data.get("conversation", data)
        msgs = conv.get("messages", []) if isinstance(conv, dict) else []
        out[path.name] = "\n".join(str(m.get("content", "")) for m in msgs)
    return out


def write_config(text: str) -> None:
    (Path(os.environ["QWENCHAT_CONFIG_DIR"]) / "config.toml").write_text(text, encoding="utf-8")


# -- a pseudo-terminal ---------------------------------------------------------------------------
# prompt_toolkit turns bracketed paste on when it shows the prompt and off when a line is accepted.
READY, ACCEPTED = b"\x1b[?2004h", b"\x1b[?2004l"


class Pty:
    """qwenchat in a pseudo-terminal of `cols` x `rows`, read as a user would see it."""

    def __init__(
        self, *args: str, cols: int = 100, rows: int = 40, env: dict[str, str] | None = None
    ) -> None:
        # A pty answers no cursor position requests: tell prompt_toolkit not to ask (and warn about it).
        extra = {"TERM": "xterm-256color", "COLUMNS": "", "LINES": "", "PROMPT_TOOLKIT_NO_CPR": "1"}
        extra.update(env or {})
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # the child becomes qwenchat
            for k, v in extra.items():
                if v:
                    os.environ[k] = v
                else:
                    os.environ.pop(k, None)
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            os.execvp(sys.executable, [*QWENCHAT, *args])
        self.resize(cols, rows, signal_child=False)
        self.out = b""
        self.pos = 0  # where the next `expect` starts looking
        self.at_prompt = False

    def resize(self, cols: int, rows: int, signal_child: bool = True) -> None:
        fcntl.ioctl(self.fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        if signal_child:  # the kernel sends SIGWINCH to the foreground group; say it anyway
            os.kill(self.pid, signal.SIGWINCH)

    def read(self, seconds: float) -> None:
        """Collect output for `seconds`."""
        deadline = time.time() + seconds
        while time.time() < deadline:
            self._read_some(deadline - time.time())

    def _read_some(self, wait: float) -> bool:
        ready, _, _ = select.select([self.fd], [], [], max(0.0, min(wait, 0.2)))
        if not ready:
            return True
        try:
            data = os.read(self.fd, 65536)
        except OSError:
            return False
        self.out += data
        return bool(data)

    def expect(self, needle: bytes | str, timeout: float = 30) -> int:
        """Wait for `needle` after the last one found; returns the offset just past it."""
        if isinstance(needle, str):
            needle = needle.encode()
        deadline = time.time() + timeout
        while needle not in self.out[self.pos :]:
            if time.time() > deadline or not self._read_some(deadline - time.time()):
                tail = strip_ansi(self.out[-1500:].decode("utf-8", "replace"))
                raise AssertionError(f"timed out waiting for {needle!r}; the terminal shows:\n{tail}")
        self.pos = self.out.index(needle, self.pos) + len(needle)
        return self.pos

    def send_line(self, line: str) -> None:
        os.write(self.fd, line.encode() + b"\r")

    def wait_prompt(self, timeout: float = 30) -> None:
        if not self.at_prompt:
            self.expect(READY, timeout)
            self.at_prompt = True

    def command(self, line: str, timeout: float = 30) -> str:
        """Type a line at the prompt and wait for the next prompt; returns what was shown in between."""
        self.wait_prompt(timeout)
        self.send_line(line)
        self.at_prompt = False
        start = self.expect(ACCEPTED, timeout)
        end = self.expect(READY, timeout) - len(READY)
        self.at_prompt = True
        return strip_ansi(self.out[start:end].decode("utf-8", "replace"))

    def text(self) -> str:
        return strip_ansi(self.out.decode("utf-8", "replace"))

    def quit(self, timeout: float = 20) -> int:
        """:q at the prompt, then the exit status (the process is killed if it does not end)."""
        try:
            self.wait_prompt(timeout)
            self.send_line(":q")
            deadline = time.time() + timeout
            while time.time() < deadline:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
                if pid:
                    self.read(0.1)
                    return os.waitstatus_to_exitcode(status)
                self._read_some(0.1)
            raise AssertionError("qwenchat did not exit after :q")
        finally:
            self.kill()

    def kill(self) -> None:
        try:
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
        try:
            os.close(self.fd)
        except OSError:
            pass


# -- a terminal emulator -------------------------------------------------------------------------
def screen_lines(
    data: bytes, cols: int, rows: int, resizes: Sequence[tuple[int, int, int]] = ()
) -> list[str]:
    """Scrollback then screen of a pyte terminal fed `data`, resized to (cols, rows) at each byte offset
    of `resizes` [(offset, cols, rows)]; trailing blanks and trailing empty lines dropped."""
    pyte = pytest.importorskip("pyte", reason="the terminal tests need pyte (the test extra)")
    screen = pyte.HistoryScreen(cols, rows, history=100_000, ratio=1)
    stream = pyte.ByteStream(screen)
    at = 0
    for offset, c, r in sorted(resizes):
        stream.feed(data[at:offset])
        screen.resize(r, c)
        at = offset
    stream.feed(data[at:])
    lines = ["".join(ch.data for ch in _row(line, screen.columns)) for line in screen.history.top]
    lines += screen.display
    lines = [line.rstrip() for line in lines]
    while lines and not lines[-1]:
        lines.pop()
    return lines


def _row(line: Any, columns: int) -> list[Any]:
    return [line[x] for x in range(max(columns, max(line.keys(), default=-1) + 1))]
