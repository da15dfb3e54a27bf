"""Secrets: an API key with surrounding whitespace (a CRLF key file read with `$(cat ...)`)
is stripped and works; no key and no password from the endpoint URL is ever printed (status line, banner,
answers, errors) or written to a session file.
"""

from __future__ import annotations

import base64
import socket
from pathlib import Path

import pytest

from tests.support.cli_harness import (
    PROMPT,
    TRACEBACK,
    ChatServer,
    PtyRun,
    cli_env,
    decode,
    parallel,
    run_pipe,
    session_files,
    status_reply,
    visible,
)

KEY = "sk-qwtest-KEY-7f3a9c"
PASSWORD = "s3cr3tPASS"


def _leaks(text: str, secret: str) -> bool:
    return secret in text or secret in visible(text)


def _saved(home: Path) -> str:
    return "".join(p.read_text(encoding="utf-8") for p in session_files(home))


# -- API keys -----------------------------------------------------------------------------------------
KEY_WAYS = ["flag", "QWENCHAT_API_KEY", "OPENAI_API_KEY"]


@pytest.mark.parametrize("way", KEY_WAYS)
@pytest.mark.parametrize("tail", ["\r\n", "\n", " \t"], ids=["crlf", "lf", "spaces"])
def test_api_key_with_trailing_whitespace_is_stripped_and_never_printed(
    tmp_path, way: str, tail: str
) -> None:
    raw = KEY + tail
    args, extra = (["--api-key", raw], {}) if way == "flag" else ([], {way: raw})
    with ChatServer() as server:
        run = run_pipe(["--endpoint", server.url, *args], ["hello there"], cli_env(tmp_path, **extra))
        auths = [h.get("Authorization") for h in server.headers]
    assert not _leaks(run.both, KEY[3:]), f"the key was printed: {run.both[-600:]!r}"
    assert TRACEBACK not in run.both
    assert run.rc == 0 and "ECHO hello there" in run.stdout, run.both[-600:]
    assert auths == [f"Bearer {KEY}"], auths


def test_sanity_clean_api_key_works_today(tmp_path) -> None:
    with ChatServer() as server:
        run = run_pipe(["--endpoint", server.url, "--api-key", KEY], ["hello there"], cli_env(tmp_path))
        assert [h.get("Authorization") for h in server.headers] == [f"Bearer {KEY}"]
    assert run.rc == 0 and "ECHO hello there" in run.stdout and KEY not in run.both


# -- a password in the endpoint URL ---------------------------------------------------------------------
def with_password(url: str) -> str:
    return url.replace("http://", f"http://user:{PASSWORD}@", 1)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def url_runs(tmp_path_factory) -> dict[str, tuple[str, str]]:
    """Each way a URL with a password can reach the screen: (everything printed, what was saved)."""
    base = tmp_path_factory.mktemp("url")

    def pipe_ok(home: Path) -> tuple[str, str]:
        with ChatServer() as server:
            run = run_pipe(["--endpoint", with_password(server.url)], ["hi", ":sessions"], cli_env(home))
        return run.both, _saved(home)

    def pipe_500(home: Path) -> tuple[str, str]:
        with ChatServer(status_reply(500, b'{"error": {"message": "overloaded"}}')) as server:
            run = run_pipe(["--endpoint", with_password(server.url)], ["hi"], cli_env(home))
        return run.both, _saved(home)

    def refused(home: Path) -> tuple[str, str]:
        url = f"http://user:{PASSWORD}@127.0.0.1:{_free_port()}/v1"
        return run_pipe(["--endpoint", url], [], cli_env(home)).both, ""

    def bad_port(home: Path) -> tuple[str, str]:
        url = f"http://user:{PASSWORD}@127.0.0.1:notaport/v1"
        return run_pipe(["--endpoint", url], [], cli_env(home)).both, ""

    def bad_scheme(home: Path) -> tuple[str, str]:
        url = f"ftp://user:{PASSWORD}@127.0.0.1/v1"
        return run_pipe(["--endpoint", url], [], cli_env(home)).both, ""

    def terminal(home: Path) -> tuple[str, str]:
        with ChatServer() as server, PtyRun(["--endpoint", with_password(server.url)], cli_env(home)) as t:
            t.wait_for(PROMPT, timeout=30)
            t.turn("hi", "ECHO hi", timeout=10)
            t.send(b"\x04")
            t.finish(10)
            return decode(t.out), _saved(home)

    ways = {
        "pipe": pipe_ok,
        "http-500": pipe_500,
        "refused": refused,
        "bad-port": bad_port,
        "bad-scheme": bad_scheme,
        "terminal": terminal,
    }
    return dict(zip(ways, parallel(lambda kv: kv[1](base / kv[0]), list(ways.items())), strict=True))


@pytest.mark.parametrize("way", ["pipe", "http-500", "refused", "bad-port", "bad-scheme", "terminal"])
def test_password_in_the_endpoint_url_is_never_shown(url_runs, way: str) -> None:
    printed, saved = url_runs[way]
    assert TRACEBACK not in printed
    assert not _leaks(printed, PASSWORD), f"{way}: the password was printed: {printed[-800:]!r}"
    assert PASSWORD not in saved, f"{way}: the password is in a session file"


def test_sanity_url_without_password_works_today(tmp_path) -> None:
    with ChatServer() as server:
        run = run_pipe(["--endpoint", server.url], ["hi"], cli_env(tmp_path))
    assert run.rc == 0 and "ECHO hi" in run.stdout and "127.0.0.1" in run.stderr


def test_api_key_a_header_cannot_carry_is_one_line_without_the_key(tmp_path) -> None:
    with ChatServer() as server:
        run = run_pipe(["--endpoint", server.url, "--api-key", KEY + "\r\nX: y"], ["hi"], cli_env(tmp_path))
        assert server.headers == []  # nothing was sent
    assert TRACEBACK not in run.both and run.rc != 0
    assert "the API key contains characters a header cannot carry" in run.stderr
    assert not _leaks(run.both, KEY[3:])


def test_url_credentials_still_authenticate_as_basic_auth(tmp_path) -> None:
    with ChatServer() as server:
        run = run_pipe(["--endpoint", with_password(server.url)], ["hi"], cli_env(tmp_path))
        auths = [h.get("Authorization") for h in server.headers]
    token = base64.b64encode(f"user:{PASSWORD}".encode()).decode()
    assert run.rc == 0 and "ECHO hi" in run.stdout and auths == [f"Basic {token}"]
