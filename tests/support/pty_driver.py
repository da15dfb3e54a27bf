"""The one pseudo-terminal driver: `python -m qwenchat ARGS` in a pty, read as a user would see it.

Every test that types into the real program uses this class, directly (tests/e2e) or through the thin
constructors of tests/support/cli_harness.py (`PtyRun`: an explicit environment, cursor-position requests
answered) and tests/support/defects_harness.py (`Pty`: prompt_toolkit told not to ask for the cursor
position, lines typed one prompt at a time). Nothing here imports qwenchat.

    with Pty("--endpoint", url, env=env) as t:
        pos = t.wait_for("›")                # bytes are kept in t.out; the index just past the needle
        seg = t.turn("hi", until=b"Hello")   # type a line, wait for the answer and the next prompt
        assert t.finish() == 0
"""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import signal
import struct
import sys
import termios
import time
from collections.abc import Callable, Mapping
from pathlib import Path

QWENCHAT = [sys.executable, "-m", "qwenchat"]
PROMPT = "›".encode()
# prompt_toolkit turns bracketed paste on when it shows the prompt and off when a line is accepted.
READY, ACCEPTED = b"\x1b[?2004h", b"\x1b[?2004l"
ANSI_RE = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[()][0-9A-B]|\x1b[=>78]")


def strip_ansi(text: str) -> str:
    return ANSI_RE.sub("", text).replace("\r", "")


class Pty:
    """qwenchat in a `cols` x `rows` pseudo-terminal. `env` is the child's whole environment (default: this
    process's, with TERM=xterm-256color); `cwd` its working directory. `out` holds every byte the terminal
    got; `rc` the exit status once the process is gone."""

    def __init__(
        self,
        *args: str,
        env: Mapping[str, str] | None = None,
        cwd: Path | str | None = None,
        cols: int = 100,
        rows: int = 40,
    ) -> None:
        child_env = dict(env) if env is not None else {**os.environ, "TERM": "xterm-256color"}
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # the child: becomes qwenchat
            try:
                if cwd is not None:
                    os.chdir(cwd)
                os.umask(0o022)  # the usual default, so file modes are qwenchat's choice
                signal.signal(signal.SIGINT, signal.SIG_DFL)  # the test runner may have ignored it
                # The size is set before qwenchat starts: set by the parent it could come too late.
                fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
                os.execvpe(sys.executable, [*QWENCHAT, *args], child_env)
            finally:
                os._exit(127)
        self.out = b""
        self.rc: int | None = None
        self.pos = 0  # where the next `expect` starts looking
        self.at_prompt = False
        self._cpr_answered = 0

    # -- reading --------------------------------------------------------------------------------------
    def wait_for(self, needle: bytes | str, timeout: float = 20, start: int = 0) -> int:
        """Read until `needle` shows after byte `start`; the index just past it (AssertionError on timeout
        or when the terminal closed)."""
        want = needle.encode() if isinstance(needle, str) else needle
        deadline = time.monotonic() + timeout
        while want not in self.out[start:]:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"timed out waiting for {want!r}; got {self.out[-1500:]!r}")
            if not self._read_once(min(left, 0.2)):
                raise AssertionError(f"the terminal closed before {want!r}; got {self.out[-1500:]!r}")
        return self.out.index(want, start) + len(want)

    def read_until(self, needle: bytes | str, timeout: float = 180, start: int = 0) -> int:
        """`wait_for` with room for loading a model."""
        return self.wait_for(needle, timeout, start)

    def expect(self, needle: bytes | str, timeout: float = 30) -> int:
        """Wait for `needle` after the last one `expect` found; the offset just past it."""
        want = needle.encode() if isinstance(needle, str) else needle
        deadline = time.monotonic() + timeout
        while want not in self.out[self.pos :]:
            left = deadline - time.monotonic()
            if left <= 0 or not self._read_once(min(left, 0.2)):
                tail = strip_ansi(self.out[-1500:].decode("utf-8", "replace"))
                raise AssertionError(f"timed out waiting for {want!r}; the terminal shows:\n{tail}")
        self.pos = self.out.index(want, self.pos) + len(want)
        return self.pos

    def pump(self, seconds: float) -> None:
        """Read whatever comes for `seconds`."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            if not self._read_once(min(left, 0.05)):
                return

    def settle(self, quiet: float = 0.15, timeout: float = 5) -> None:
        """Read until nothing came for `quiet` seconds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            before = len(self.out)
            if not self._read_once(quiet) or len(self.out) == before:
                return

    def text(self) -> str:
        """Everything shown so far, without escape sequences."""
        return strip_ansi(self.out.decode("utf-8", "replace"))

    def _read_once(self, wait: float) -> bool:
        """One read; False when the terminal is closed."""
        if self.fd < 0:
            return False
        ready, _, _ = select.select([self.fd], [], [], max(0.0, wait))
        if not ready:
            return True
        try:
            data = os.read(self.fd, 65536)
        except OSError:
            return False
        if not data:
            return False
        self.out += data
        self._answer_cpr()
        return True

    def _answer_cpr(self) -> None:
        """Answer cursor-position requests (ESC[6n) as a terminal does: prompt_toolkit otherwise waits up
        to a second for each one, and the timing of Ctrl-C tests would not be a real terminal's."""
        asked = self.out.count(b"\x1b[6n")
        while self._cpr_answered < asked:
            self._cpr_answered += 1
            try:
                os.write(self.fd, b"\x1b[40;1R")  # the bottom row, where a busy terminal's cursor is
            except OSError:
                return

    # -- writing --------------------------------------------------------------------------------------
    def send(self, data: bytes) -> None:
        os.write(self.fd, data)

    def type(self, text: str, enter: bool = True) -> None:
        self.send(text.encode() + (b"\r" if enter else b""))

    def feed(self, data: bytes, chunk: int = 1024, stop: Callable[[], bool] | None = None) -> int:
        """Write `data` a chunk at a time, reading the terminal in between (a child echoing what it gets
        would otherwise block on a full terminal while we block on its full input); `stop()` is asked
        after every chunk. The number of bytes written."""
        flags = fcntl.fcntl(self.fd, fcntl.F_GETFL)
        fcntl.fcntl(self.fd, fcntl.F_SETFL, flags | os.O_NONBLOCK)
        done = 0
        try:
            while done < len(data) and self.alive():
                _, writable, _ = select.select([], [self.fd], [], 0.05)
                if writable:
                    try:
                        done += os.write(self.fd, data[done : done + chunk])
                    except BlockingIOError:
                        pass
                self._read_once(0.005)
                if stop is not None and stop():
                    break
        finally:
            fcntl.fcntl(self.fd, fcntl.F_SETFL, flags)
        return done

    def turn(self, text: str, until: bytes | str, timeout: float = 20) -> bytes:
        """Type a line, wait for `until`, then for the prompt after it; the bytes of that turn. The typed
        line is echoed: it must not contain `until`."""
        want = until.encode() if isinstance(until, str) else until
        assert want not in text.encode(), f"{until!r} would match the echo of {text!r}"
        start = len(self.out)
        self.type(text)
        pos = self.wait_for(want, timeout=timeout, start=start)
        self.wait_for(PROMPT, timeout=timeout, start=pos)
        return self.out[start:]

    # -- one prompt at a time (bracketed paste marks the prompt: see READY) ----------------------------
    def wait_prompt(self, timeout: float = 30) -> None:
        if not self.at_prompt:
            self.expect(READY, timeout)
            self.at_prompt = True

    def command(self, line: str, timeout: float = 30) -> str:
        """Type a line at the prompt and wait for the next prompt; what was shown in between."""
        self.wait_prompt(timeout)
        self.type(line)
        self.at_prompt = False
        start = self.expect(ACCEPTED, timeout)
        end = self.expect(READY, timeout) - len(READY)
        self.at_prompt = True
        return strip_ansi(self.out[start:end].decode("utf-8", "replace"))

    def quit(self, timeout: float = 20) -> int:
        """:q at the prompt, then the exit status (the process is killed if it does not end)."""
        try:
            self.wait_prompt(timeout)
            self.type(":q")
            rc = self.finish(timeout)
            if self.killed:
                raise AssertionError("qwenchat did not exit after :q")
            return rc
        finally:
            self.kill()

    # -- the window -------------------------------------------------------------------------------------
    def resize(self, cols: int, rows: int) -> None:
        """What a terminal does when its window changes: the new size, then SIGWINCH."""
        fcntl.ioctl(self.fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        os.kill(self.pid, signal.SIGWINCH)  # the kernel signals the foreground group; say it anyway

    # -- the process ----------------------------------------------------------------------------------
    killed = False  # finish() had to kill it

    def alive(self) -> bool:
        if self.rc is not None:
            return False
        pid, status = os.waitpid(self.pid, os.WNOHANG)
        if pid == 0:
            return True
        self.rc = os.waitstatus_to_exitcode(status)
        return False

    def finish(self, timeout: float = 15) -> int:
        """Wait for the exit status, reading the rest of the output; killed after `timeout`."""
        deadline = time.monotonic() + timeout
        while self.alive():
            if time.monotonic() > deadline:
                self.killed = True
                self._stop()
                break
            self._read_once(0.05)
        self.pump(0.05)
        if self.rc is None:
            _, status = os.waitpid(self.pid, 0)
            self.rc = os.waitstatus_to_exitcode(status)
        return self.rc

    def _stop(self) -> None:
        """SIGKILL and reap, keeping the terminal open for what it still holds."""
        if self.rc is None:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            try:
                _, status = os.waitpid(self.pid, 0)
                self.rc = os.waitstatus_to_exitcode(status)
            except ChildProcessError:
                self.rc = -signal.SIGKILL

    def kill(self) -> None:
        """SIGKILL (no chance to save anything on the way out), reap, close the terminal. Idempotent."""
        self._stop()
        if self.fd >= 0:
            try:
                os.close(self.fd)
            except OSError:
                pass
            self.fd = -1

    def peak_rss(self) -> int:
        """The process's peak resident memory in bytes (VmHWM), 0 once it is gone."""
        return _proc_kib(self.pid, "VmHWM") * 1024

    def rss(self) -> int:
        return _proc_kib(self.pid, "VmRSS") * 1024

    def __enter__(self) -> Pty:
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill()


def _proc_kib(pid: int, field: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0
