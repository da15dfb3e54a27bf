"""Safety against a server: every server response, however malformed, becomes at most one clear line; the REPL
lives and answers the next message; the terminal's modes are restored.

A corpus of malformed streams against the scripted server, each in a fresh qwenchat process (pipe mode, and
a terminal for some), with the second request answered properly. Cases run a few processes at a time.
"""

from __future__ import annotations

import io
import json
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from qwenchat.cli.app import main
from qwenchat.environment import Environment
from tests.support.cli_harness import (
    PROMPT,
    TRACEBACK,
    ChatServer,
    PtyRun,
    Reply,
    cli_env,
    decode,
    error_lines,
    parallel,
    raw_reply,
    run_pipe,
    status_reply,
    terminal_problems,
    visible,
)
from tests.support.scripted_server import delta, sse

SECOND = "SECOND-ANSWER-OK"
DONE = sse(b"[DONE]")


def chunk(choices: object, **top: object) -> bytes:
    return sse({"object": "chat.completion.chunk", "choices": choices, **top})


def good(text: str = "partial ") -> bytes:
    return sse(delta(text))


@dataclass(frozen=True)
class Case:
    name: str
    events: bytes
    # True: nothing usable came, so exactly one error line; False: the answer itself was whole (a bad
    # stats or finish field), so a fix may also ignore the field quietly: at most one error line.
    must_error: bool = True


CASES = [
    Case("choices_not_a_list", chunk("notalist") + DONE),
    Case("choices_null_item", chunk([None]) + DONE),
    Case("choices_int_item", chunk([5]) + DONE),
    Case("delta_int", chunk([{"index": 0, "delta": 5}]) + DONE),
    Case("delta_list", chunk([{"index": 0, "delta": ["x"]}]) + DONE),
    Case("content_int", chunk([{"index": 0, "delta": {"content": 5}}]) + DONE),
    Case("content_list", chunk([{"index": 0, "delta": {"content": ["x"]}}]) + DONE),
    Case("content_dict", chunk([{"index": 0, "delta": {"content": {"a": 1}}}]) + DONE),
    Case("reasoning_int", chunk([{"index": 0, "delta": {"reasoning_content": 3}}]) + DONE),
    Case(
        "finish_reason_list",
        good("whole answer") + chunk([{"index": 0, "delta": {}, "finish_reason": ["x"]}]) + DONE,
        must_error=False,
    ),
    Case(
        "usage_prompt_tokens_str",
        good("whole answer") + sse(delta(None, "stop")) + chunk([], usage={"prompt_tokens": "many"}) + DONE,
        must_error=False,
    ),
    Case(
        "usage_cached_tokens_str",
        good("whole answer")
        + sse(delta(None, "stop"))
        + chunk([], usage={"prompt_tokens": 3, "prompt_tokens_details": {"cached_tokens": "x"}})
        + DONE,
        must_error=False,
    ),
    # json.dumps writes the lone surrogate as the JSON escape "\ud800", as a broken server would
    Case("lone_surrogate", good("A\ud800B") + sse(delta(None, "stop")) + DONE, must_error=False),
]
PTY_CASES = ["choices_not_a_list", "delta_int", "content_int", "finish_reason_list"]
PTY_CASES += ["usage_prompt_tokens_str", "lone_surrogate"]
EXCEPTION_NAMES = re.compile(r"\b[A-Za-z]+(Error|Exception)\b|unhashable|object has no attribute")


def check_one_line(text: str, must_error: bool) -> list[str]:
    """Problems with how one bad answer was reported: a traceback, too many (or no) error lines, a bare
    Python exception instead of words."""
    found = []
    if TRACEBACK in text:
        found.append("a traceback was printed")
    errors = error_lines(text)
    if len(errors) > 1 or (must_error and not errors):
        found.append(f"{len(errors)} error lines: {errors}")
    found += [f"not a clear line: {e!r}" for e in errors if EXCEPTION_NAMES.search(e)]
    return found


def pipe_case(home: Path, reply: Reply) -> tuple[int, str]:
    """A bad answer, then a good one; the whole output (stdout and stderr in order)."""
    with ChatServer(reply, SECOND) as server:
        run = run_pipe(["--endpoint", server.url], ["first", "second"], cli_env(home), merged=True)
    return run.rc, run.stdout


@pytest.fixture(scope="module")
def pipe_results(tmp_path_factory) -> dict[str, tuple[int, str]]:
    home = tmp_path_factory.mktemp("server-pipe")
    return dict(
        zip(
            [c.name for c in CASES],
            parallel(lambda c: pipe_case(home / c.name, raw_reply(c.events)), CASES),
            strict=True,
        )
    )


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_malformed_stream_in_pipe_mode(pipe_results, case: Case) -> None:
    rc, text = pipe_results[case.name]
    first = text[: text.find(SECOND)] if SECOND in text else text
    found = check_one_line(first, case.must_error)
    if rc != (1 if error_lines(first) else 0):  # a failed turn: status 1 once every line ran
        found.append(f"exit status {rc}")
    if SECOND not in text:
        found.append("the next message was not answered")
    assert not found, f"{case.name}: {found}\n{text[-1500:]}"


def pty_case(home: Path, case: Case) -> tuple[int | None, bytes, list[str]]:
    notes: list[str] = []
    with (
        ChatServer(raw_reply(case.events), SECOND) as server,
        PtyRun(["--endpoint", server.url], cli_env(home)) as t,
    ):
        try:
            t.wait_for(PROMPT, timeout=30)
            pos = len(t.out)
            t.type("first")
            pos = t.wait_for(b"\xe2\x97\x8f", timeout=10, start=pos)  # the answer's header
            t.wait_for(PROMPT, timeout=10, start=pos)
            notes.append(decode(t.out[pos:]))
            t.turn("second", SECOND, timeout=10)
        except AssertionError as exc:
            notes.append(f"stopped: {str(exc)[:200]}")
        t.send(b"\x04")
        rc = t.finish(10)
        return rc, t.out, notes


@pytest.fixture(scope="module")
def pty_results(tmp_path_factory) -> dict[str, tuple[int | None, bytes, list[str]]]:
    home = tmp_path_factory.mktemp("server-pty")
    cases = [c for c in CASES if c.name in PTY_CASES]
    return dict(zip(PTY_CASES, parallel(lambda c: pty_case(home / c.name, c), cases), strict=True))


@pytest.mark.parametrize("name", PTY_CASES)
def test_malformed_stream_in_a_terminal(pty_results, name: str) -> None:
    rc, out, notes = pty_results[name]
    case = next(c for c in CASES if c.name == name)
    text = decode(out)
    first = text[: text.find(SECOND)] if SECOND in text else text
    found = check_one_line(first, case.must_error)
    found += terminal_problems(out)
    if rc != 0:
        found.append(f"exit status {rc}")
    if SECOND not in visible(out):
        found.append("the next message was not answered")
    assert not found, f"{name}: {found}; {notes[-1:]}"


# -- not errors, or errors that must say what happened ----------------------------------------------
REDIRECTS = (301, 302, 307, 308)
ELSEWHERE = "http://127.0.0.1:9/elsewhere/v1/chat/completions"


@pytest.fixture(scope="module")
def quiet_run(tmp_path_factory) -> str:
    """One process: an empty `data:` field inside a good answer, then each redirect, each followed by a
    good answer (these never killed the REPL; their messages were wrong)."""
    empty = raw_reply(b"data:\n\n" + good("EMPTY-DATA-ANSWER") + sse(delta(None, "stop")) + DONE)
    replies: list[Reply] = [empty, "AFTER-EMPTY"]
    for code in REDIRECTS:
        replies += [status_reply(code, b"moved", [("Location", ELSEWHERE)]), f"AFTER-{code}"]
    with ChatServer(*replies) as server:
        lines = [f"turn {n}" for n in range(len(replies))]
        run = run_pipe(
            ["--endpoint", server.url], lines, cli_env(tmp_path_factory.mktemp("quiet")), merged=True
        )
    # The redirected turns failed: every line ran, and the exit status says so.
    assert TRACEBACK not in run.stdout and run.rc == 1, run.stdout[-2000:]
    return run.stdout


def test_empty_data_field_dispatches_nothing(quiet_run) -> None:
    """SSE: a `data:` line with nothing after it is an empty event, not a malformed one."""
    first = quiet_run[: quiet_run.find("AFTER-EMPTY")]
    assert "EMPTY-DATA-ANSWER" in first
    assert error_lines(first) == []


@pytest.mark.parametrize("code", REDIRECTS)
def test_redirect_says_redirect_and_where(quiet_run, code: int) -> None:
    start = quiet_run.find("AFTER-EMPTY")
    prev = {301: "AFTER-EMPTY", 302: "AFTER-301", 307: "AFTER-302", 308: "AFTER-307"}[code]
    seg = quiet_run[quiet_run.find(prev, start) : quiet_run.find(f"AFTER-{code}")]
    errors = error_lines(seg)
    assert len(errors) == 1, errors
    assert "redirect" in errors[0].lower() and "127.0.0.1:9/elsewhere" in errors[0], errors[0]
    assert f"AFTER-{code}" in quiet_run  # the next message is answered


def test_sanity_good_server_error_is_one_line_today(tmp_path) -> None:
    """A well-formed 500 with a JSON error body: one error line naming it, and the next answer comes."""
    body = json.dumps({"error": {"message": "model overloaded"}}).encode()
    rc, text = pipe_case(tmp_path, status_reply(500, body))
    assert rc == 1 and SECOND in text  # the failed turn makes the exit status non-zero
    errors = error_lines(text)
    assert len(errors) == 1 and "model overloaded" in errors[0], errors
    assert not check_one_line(text, True)


# -- the top-level guard: an unexpected exception is one line, and the terminal gets its modes back -----
def _broken_run(tty: bool, **environ: str) -> tuple[int, str, str]:
    def factory(args, err):
        raise RuntimeError("boom\nsecond line")

    env = Environment(
        stdin=io.StringIO(""),
        stdout=io.StringIO(),
        stderr=io.StringIO(),
        stdin_isatty=False,
        stdout_isatty=tty,
        environ=environ,
        engine_factory=factory,
    )
    rc = main(["--no-autosave"], env)
    return rc, env.stdout.getvalue(), env.stderr.getvalue()


def test_an_unexpected_exception_is_one_line_and_the_terminal_is_restored() -> None:
    rc, out, err = _broken_run(tty=True)
    assert rc == 1 and TRACEBACK not in err
    assert err.strip() == "error: internal error (RuntimeError): boom"
    assert out.endswith("\x1b[?25h\x1b[?2004l")  # cursor shown, bracketed paste off


def test_a_pipe_gets_no_terminal_codes_and_debug_shows_the_traceback() -> None:
    rc, out, err = _broken_run(tty=False)
    assert rc == 1 and out == "" and len(error_lines(err)) == 1
    with pytest.raises(RuntimeError, match="boom"):
        _broken_run(tty=False, QWENCHAT_DEBUG="1")
