"""Drive the real program from outside, for the safety tests: `python -m qwenchat` through pipes and in a
pseudo-terminal, against the scripted OpenAI-compatible server (tests/scripted_server.py) on 127.0.0.1.

Nothing here imports qwenchat: the tests must hold whatever the internals become.

    with ChatServer("Hello", "World") as server:  # 1st request: "Hello", 2nd: "World", then echoes
        run = run_pipe(["--endpoint", server.url], ["hi", "again"], cli_env(tmp_path))
        with PtyRun(["--endpoint", server.url], cli_env(tmp_path)) as t:
            seg = t.turn("hi", until=b"Hello")              # bytes the terminal got for that turn
"""

from __future__ import annotations

import json
import os
import pty
import queue
import re
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

from tests.e2e.test_demo_chat import Pty
from tests.support.scripted_server import Scripted, delta, sse, start_stream

QWENCHAT = [sys.executable, "-m", "qwenchat"]
ROOT = Path(__file__).resolve().parents[2]
PROMPT = "›".encode()
TRACEBACK = "Traceback (most recent call last)"

Script = Callable[[BaseHTTPRequestHandler, dict[str, Any]], None]
Reply = str | bytes | Script  # text to stream, raw SSE bytes after a 200 header, or a handler of its own


# -- environment -------------------------------------------------------------------------------
def cli_env(home: Path, *, unset: Iterable[str] = (), **extra: str) -> dict[str, str]:
    """The environment for one qwenchat run: data and config under `home`, this tree first on the path,
    unbuffered output (so stdout and stderr keep their order in one pipe), no colour overrides."""
    env = dict(os.environ)
    for key in ("NO_COLOR", "FORCE_COLOR", "COLUMNS", "LINES", "QWENCHAT_API_KEY", "OPENAI_API_KEY", *unset):
        env.pop(key, None)
    env.update(
        QWENCHAT_DATA_DIR=str(home / "data"),
        QWENCHAT_CONFIG_DIR=str(home / "config"),
        PYTHONPATH=os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]),
        PYTHONUNBUFFERED="1",
        TOKENIZERS_PARALLELISM="false",
        TERM="xterm-256color",
    )
    env.update(extra)
    return env


# -- the scripted server -------------------------------------------------------------------------
def text_reply(text: str, *, chunks: int = 1, step: float = 0.0, finish: str = "stop") -> Script:
    """Stream `text` in `chunks` pieces, `step` seconds apart (against absolute deadlines, so the end is
    known in advance: `step * (chunks - 1)` after the request), then finish_reason and [DONE]."""

    def script(h: BaseHTTPRequestHandler, body: dict[str, Any]) -> None:
        t0 = time.monotonic()
        start_stream(h)
        size = max(1, -(-len(text) // chunks))
        pieces = [text[i : i + size] for i in range(0, len(text), size)] or [""]
        for k, piece in enumerate(pieces):
            _sleep_until(t0 + k * step)
            h.wfile.write(sse(delta(piece)))
            h.wfile.flush()
        h.wfile.write(sse(delta(None, finish)) + sse(b"[DONE]"))
        h.wfile.flush()

    return script


def raw_reply(*events: bytes) -> Script:
    """A 200 event stream whose body is exactly `events` (malformed data, error events, ...)."""

    def script(h: BaseHTTPRequestHandler, body: dict[str, Any]) -> None:
        start_stream(h)
        for e in events:
            h.wfile.write(e)
            h.wfile.flush()

    return script


def status_reply(status: int, body: bytes = b"", headers: Sequence[tuple[str, str]] = ()) -> Script:
    """A plain HTTP answer: an error with a body, a redirect with a Location, ..."""

    def script(h: BaseHTTPRequestHandler, req: dict[str, Any]) -> None:
        h.send_response(status)
        for k, v in headers:
            h.send_header(k, v)
        h.send_header("Content-Type", "application/json" if body[:1] in (b"{", b"[") else "text/plain")
        h.send_header("Content-Length", str(len(body)))
        h.send_header("Connection", "close")
        h.end_headers()
        h.wfile.write(body)
        h.close_connection = True

    return script


def echo_reply(prefix: str = "ECHO ") -> Script:
    """Answer with the last user message: every turn names itself in the output."""

    def script(h: BaseHTTPRequestHandler, body: dict[str, Any]) -> None:
        users = [m.get("content") for m in body.get("messages", []) if m.get("role") == "user"]
        text_reply(prefix + str(users[-1] if users else ""))(h, body)

    return script


class ChatServer(Scripted):
    """Scripted, answering the n-th chat request with `replies[n]` and every later one with `then`
    (default: echo). `arrivals` gets the monotonic time of each request as it comes in."""

    def __init__(self, *replies: Reply, then: Reply | None = None, models: Sequence[str] | None = None):
        super().__init__()
        self.replies: list[Reply] = list(replies)
        self.then: Reply = then if then is not None else echo_reply()
        self.arrivals: queue.Queue[float] = queue.Queue()
        self.ends: list[float] = []  # when each reply's last byte was written
        if models is not None:
            self.models = list(models)
        self.script = self._answer

    def _answer(self, h: BaseHTTPRequestHandler, body: dict[str, Any]) -> None:
        self.arrivals.put(time.monotonic())
        n = len(self.requests) - 1
        reply = self.replies[n] if n < len(self.replies) else self.then
        if isinstance(reply, str):
            reply = text_reply(reply)
        elif isinstance(reply, bytes):
            reply = raw_reply(reply)
        try:
            reply(h, body)
        finally:
            self.ends.append(time.monotonic())

    def __enter__(self) -> ChatServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _sleep_until(t: float) -> None:
    delay = t - time.monotonic()
    if delay > 0:
        time.sleep(delay)


# -- pipes ---------------------------------------------------------------------------------------
@dataclass
class Run:
    rc: int
    out: bytes
    err: bytes

    @property
    def stdout(self) -> str:
        return decode(self.out)

    @property
    def stderr(self) -> str:
        return decode(self.err)

    @property
    def both(self) -> str:
        return self.stdout + self.stderr


def decode(data: bytes) -> str:
    """Output as text; a byte that is not UTF-8 stays visible as a lone surrogate (\\udcXX)."""
    return data.decode("utf-8", errors="surrogateescape")


def run_pipe(
    args: Sequence[str],
    stdin: str | Sequence[str],
    env: dict[str, str],
    *,
    timeout: float = 60,
    cwd: Path | None = None,
    merged: bool = False,
) -> Run:
    """qwenchat with stdin and stdout as pipes (pipe mode). `stdin`: text, or lines. `merged`: stderr goes
    into stdout, in order (the env from cli_env is unbuffered)."""
    data = stdin if isinstance(stdin, str) else "".join(line + "\n" for line in stdin)
    proc = subprocess.run(
        [*QWENCHAT, *args],
        input=data.encode("utf-8", errors="surrogatepass"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT if merged else subprocess.PIPE,
        env=env,
        cwd=cwd,
        timeout=timeout,
    )
    return Run(proc.returncode, proc.stdout, proc.stderr or b"")


class PipeSession:
    """qwenchat in pipe mode, fed one line at a time (stdout and stderr merged, in order)."""

    def __init__(self, args: Sequence[str], env: dict[str, str], cwd: Path | None = None) -> None:
        self.proc = subprocess.Popen(
            [*QWENCHAT, *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=cwd,
        )
        self.out = b""

    def send_line(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line.encode() + b"\n")
        self.proc.stdin.flush()

    def wait_for(self, needle: str, timeout: float = 20, start: int = 0) -> int:
        """Read until `needle` shows after byte `start`; the index just past it."""
        want = needle.encode()
        fd = self.proc.stdout.fileno()  # type: ignore[union-attr]
        deadline = time.monotonic() + timeout
        while want not in self.out[start:]:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"timed out waiting for {needle!r}; got {self.out[-1500:]!r}")
            ready, _, _ = select.select([fd], [], [], min(left, 0.2))
            if ready:
                chunk = os.read(fd, 65536)
                if not chunk:
                    raise AssertionError(f"exited before {needle!r}; got {self.out[-1500:]!r}")
                self.out += chunk
        return self.out.index(want, start) + len(want)

    def close(self, timeout: float = 20) -> int:
        """End of input, then the exit status (killed after `timeout`)."""
        try:
            out, _ = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, _ = self.proc.communicate()
        self.out += out or b""
        return self.proc.returncode

    @property
    def text(self) -> str:
        return decode(self.out)


# -- a pseudo-terminal -----------------------------------------------------------------------------
class PtyRun(Pty):
    """qwenchat in a 100x40 pseudo-terminal (tests.test_e2e.Pty with an environment and a timeout on
    everything). `out` holds every byte the terminal got."""

    def __init__(self, args: Sequence[str], env: dict[str, str], cwd: Path | None = None) -> None:
        import fcntl
        import struct
        import termios

        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # the child: becomes qwenchat
            try:
                if cwd is not None:
                    os.chdir(cwd)
                os.umask(0o022)  # the usual default, so file modes are qwenchat's choice
                signal.signal(signal.SIGINT, signal.SIG_DFL)  # the test runner may have ignored it
                os.execvpe(sys.executable, [*QWENCHAT, *args], env)
            finally:
                os._exit(127)
        fcntl.ioctl(self.fd, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 100, 0, 0))
        self.out = b""
        self.rc: int | None = None
        self._cpr_answered = 0

    # reading
    def wait_for(self, needle: bytes | str, timeout: float = 20, start: int = 0) -> int:
        """Read until `needle` shows after byte `start`; the index just past it (AssertionError on timeout
        or when the process is gone)."""
        return self.read_until(needle.encode() if isinstance(needle, str) else needle, timeout, start)

    def read_until(self, needle: bytes, timeout: float = 180, start: int = 0) -> int:
        deadline = time.monotonic() + timeout
        while needle not in self.out[start:]:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"timed out waiting for {needle!r}; got {self.out[-1500:]!r}")
            if not self._read_once(min(left, 0.2)):
                raise AssertionError(f"the terminal closed before {needle!r}; got {self.out[-1500:]!r}")
        return self.out.index(needle, start) + len(needle)

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

    def _read_once(self, wait: float) -> bool:
        """One read; False when the terminal is closed."""
        ready, _, _ = select.select([self.fd], [], [], wait)
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

    # writing
    def type(self, text: str, enter: bool = True) -> None:
        self.send(text.encode() + (b"\r" if enter else b""))

    def feed(self, data: bytes, chunk: int = 1024, stop: Callable[[], bool] | None = None) -> int:
        """Write `data` a chunk at a time, reading the terminal in between (a child echoing what it gets
        would otherwise block on a full terminal while we block on its full input); `stop()` is asked
        after every chunk. The number of bytes written."""
        import fcntl

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
        pos = self.wait_for(until, timeout=timeout, start=start)
        self.wait_for(PROMPT, timeout=timeout, start=pos)
        return self.out[start:]

    # the process
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
                self.kill()
                break
            self._read_once(0.05)
        self.pump(0.05)
        if self.rc is None:
            _, status = os.waitpid(self.pid, 0)
            self.rc = os.waitstatus_to_exitcode(status)
        return self.rc

    def kill(self) -> None:
        if self.rc is None:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            _, status = os.waitpid(self.pid, 0)
            self.rc = os.waitstatus_to_exitcode(status)

    def peak_rss(self) -> int:
        """The process's peak resident memory in bytes (VmHWM), 0 once it is gone."""
        return _proc_kib(self.pid, "VmHWM") * 1024

    def rss(self) -> int:
        return _proc_kib(self.pid, "VmRSS") * 1024

    def __enter__(self) -> PtyRun:
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill()
        try:
            os.close(self.fd)
        except OSError:
            pass


def _proc_kib(pid: int, field: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


# -- reading what the terminal got -----------------------------------------------------------------
_SEQUENCE = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]"  # CSI
    r"|\x1b[\]PX^_][^\n]*?(?:\x07|\x1b\\)"  # OSC, DCS, SOS, PM, APC up to BEL or ST (one line)
    r"|\x1b[ -/]*[0-~]"  # other escapes (ESC 7, ESC =, charset selections)
    r"|[\x00-\x08\x0b-\x1f\x7f]",  # other C0 controls (\n and \t stay)
    re.S,
)


def visible(data: bytes | str) -> str:
    """Roughly what a person reads: the text with escape sequences and controls taken out (no emulation:
    a line that was redrawn shows more than once)."""
    text = decode(data) if isinstance(data, bytes) else data
    return _SEQUENCE.sub("", text.replace("\r\n", "\n"))


def error_lines(text: str) -> list[str]:
    """The lines that report an error ("error: ..."), as seen on screen."""
    return [ln.strip() for ln in visible(text).splitlines() if ln.strip().lower().startswith("error")]


def terminal_problems(out: bytes) -> list[str]:
    """Terminal modes qwenchat turned on and left on: a hidden cursor, bracketed paste."""
    problems = []
    for on, off, what in (
        (b"\x1b[?25l", b"\x1b[?25h", "cursor left hidden"),
        (b"\x1b[?2004h", b"\x1b[?2004l", "bracketed paste left on"),
    ):
        if out.rfind(on) > out.rfind(off):
            problems.append(what)
    return problems


# -- files on disk ---------------------------------------------------------------------------------
def sessions(home: Path) -> list[dict[str, Any]]:
    """The autosaved sessions under the data dir of cli_env(home), oldest first, as JSON."""
    folder = home / "data" / "sessions"
    files = sorted(folder.glob("*.json"), key=lambda p: p.stat().st_mtime) if folder.is_dir() else []
    return [json.loads(p.read_text(encoding="utf-8")) for p in files]


def session_files(home: Path) -> list[Path]:
    folder = home / "data" / "sessions"
    return sorted(folder.glob("*.json"), key=lambda p: p.stat().st_mtime) if folder.is_dir() else []


def messages(session: dict[str, Any]) -> list[dict[str, Any]]:
    return list(session.get("conversation", {}).get("messages", []))


def saved_texts(home: Path) -> list[str]:
    """Every message's content in every autosaved session."""
    return [str(m.get("content")) for s in sessions(home) for m in messages(s)]


def wait_saved(home: Path, text: str, timeout: float = 3) -> bool:
    """True once some autosaved message contains `text` (the write may land just after the prompt)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if any(text in t for t in saved_texts(home)):
                return True
        except (OSError, ValueError):
            pass  # a file being replaced this instant
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)


def make_session(home: Path, server: ChatServer, lines: Sequence[str]) -> Path:
    """A real autosaved session (one pipe run, each line a turn); its file, for a test to edit."""
    before = set(session_files(home))
    run = run_pipe(["--endpoint", server.url], lines, cli_env(home))
    assert run.rc == 0, run.both
    new = [p for p in session_files(home) if p not in before]
    assert len(new) == 1, (new, run.both)
    return new[0]


def edit_session(path: Path, edit: Callable[[dict[str, Any]], None]) -> None:
    """Rewrite a session file through `edit(data)`; json.dumps keeps lone surrogates as \\udXXX escapes."""
    data = json.loads(path.read_text(encoding="utf-8"))
    edit(data)
    path.write_text(json.dumps(data, indent=2), encoding="utf-8")


def parallel(fn: Callable[[Any], Any], items: Sequence[Any], workers: int = 3) -> list[Any]:
    """fn over items, a few at a time (each starts its own qwenchat; most of that is import time)."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(fn, items))
