"""Drive the real program from outside, for the safety tests: `python -m qwenchat` through pipes and in a
pseudo-terminal (tests/support/pty_driver.py), against the scripted OpenAI-compatible server
(tests/support/scripted_server.py) on 127.0.0.1.

Nothing here imports qwenchat: the tests must hold whatever the internals become.

    with ChatServer("Hello", "World") as server:  # 1st request: "Hello", 2nd: "World", then echoes
        run = run_pipe(["--endpoint", server.url], ["hi", "again"], cli_env(tmp_path))
        with PtyRun(["--endpoint", server.url], cli_env(tmp_path)) as t:
            seg = t.turn("hi", until=b"Hello")              # bytes the terminal got for that turn
"""

from __future__ import annotations

import json
import os
import queue
import re
import select
import subprocess
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

from tests.support.pty_driver import PROMPT as PROMPT  # the safety tests wait for it
from tests.support.pty_driver import QWENCHAT, Pty
from tests.support.scripted_server import Scripted, delta, sse, start_stream

ROOT = Path(__file__).resolve().parents[2]
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
    """qwenchat in a 100x40 pseudo-terminal (tests/support/pty_driver.py) with the environment of
    cli_env, as `PtyRun(args, env, cwd)`."""

    def __init__(self, args: Sequence[str], env: dict[str, str], cwd: Path | None = None) -> None:
        super().__init__(*args, env=env, cwd=cwd)


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
