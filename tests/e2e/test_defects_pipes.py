"""Pipes: in pipe mode only answers go to stdout; notices, errors and command output go to stderr;
a failed command makes the exit status non-zero at the end, after every line has run."""

from __future__ import annotations

import re

import pytest

from tests.support.defects_harness import answers, run_pipe, scripted_server

server = pytest.fixture(scripted_server)

ANSWER = "The answer line one.\nThe answer line two."


def piped(server, stdin: str, finish: str = "stop"):
    server.script = answers(ANSWER, finish=finish)
    return run_pipe(stdin, "--endpoint", server.url)


def test_clean_pipe_run_prints_the_answer_and_exits_0(server):
    """Sanity (passes today)."""
    proc = piped(server, "hi\n")
    assert proc.returncode == 0, proc.stderr
    assert ANSWER in proc.stdout
    assert "\x1b" not in proc.stdout


def test_stdout_holds_only_the_answers(server):
    proc = piped(server, ":conf temperature=abc\n:seed 5\nhi\n:clh\nagain\n", finish="length")
    assert proc.stdout.split() == (ANSWER + "\n" + ANSWER).split(), proc.stdout


@pytest.mark.parametrize(
    ("line", "shown"),
    [
        (":conf temperature=abc", r"error.*temperature"),  # an error
        (":seed 5", r"seed\b.*\b5\b"),  # a command's own output
        (":clh", r"history.*cleared"),  # a notice
    ],
)
def test_command_output_and_errors_go_to_stderr(server, line, shown):
    proc = piped(server, f"hi\n{line}\n")
    assert re.search(shown, proc.stderr, re.IGNORECASE), proc.stderr
    assert proc.stdout.strip() == ANSWER, proc.stdout


def test_length_stop_notice_goes_to_stderr(server):
    proc = piped(server, "hi\n", finish="length")
    assert "max_new_tokens" in proc.stderr, proc.stderr
    assert proc.stdout.strip() == ANSWER, proc.stdout


@pytest.mark.parametrize("bad", [":conf temperature=abc", ":nosuchcommand", ":load no-such-file.json"])
def test_failed_command_makes_the_exit_status_non_zero_at_the_end(server, bad):
    proc = piped(server, f"{bad}\nhi\n")
    assert ANSWER in proc.stdout, "the lines after the failed command must still run"
    assert proc.returncode != 0, (proc.stdout, proc.stderr)
