"""Data loss: `:clh`, `:load` and `:resume` must never overwrite the autosaved session (they start
a new one), and pipe runs must not become the "last" session that `--resume` reopens.

The real program in a pseudo-terminal (an interactive user) or a pipe, against the scripted server."""

from __future__ import annotations

import time

import pytest

from tests.support.defects_harness import (
    Pty,
    echo,
    run_pipe,
    scripted_server,
    session_files,
    session_texts,
    typed,
)

server = pytest.fixture(scripted_server)

SECRET = "Remember the code word PINEAPPLE."


def chat(server, *lines: str, args: tuple[str, ...] = ()) -> Pty:
    """An interactive session that types `lines` and quits."""
    server.script = echo
    return typed("--endpoint", server.url, *args, lines=lines)


def holding(word: str) -> dict[str, str]:
    return {name: text for name, text in session_texts().items() if word in text}


def assert_secret_kept() -> None:
    """A session file still holds the secret and its answer: the completed turn was not lost."""
    kept = holding("PINEAPPLE")
    assert kept, f"no autosaved session holds the PINEAPPLE turn any more: {session_texts()}"
    assert any(f"Noted: {SECRET}" in text for text in kept.values()), kept


def assert_new_session_for(word: str) -> None:
    """What was said after the command went to its own session, without the secret."""
    after = holding(word)
    assert after, f"the turn after the command was not autosaved: {session_texts()}"
    assert all("PINEAPPLE" not in text for text in after.values()), after


def make_saved_file(server, name: str = "other.json") -> str:
    server.script = echo
    proc = run_pipe(f"Other topic.\n:save {name}\n", "--endpoint", server.url, "--no-autosave")
    assert proc.returncode == 0, proc.stderr
    return name


# -- :clh ---------------------------------------------------------------------------------------
def test_clear_history_starts_a_new_autosave_session(server):
    chat(server, SECRET, ":clh", "Say hi.")
    assert_secret_kept()
    assert_new_session_for("Say hi.")


def test_clear_history_in_a_pipe_run_loses_no_autosaved_turn(server):
    # The reproduction. A pipe run may stay out of autosave altogether; if it autosaves, it must
    # not leave only the part after :clh.
    server.script = echo
    proc = run_pipe(f"{SECRET}\n:clh\nSay hi.\n", "--endpoint", server.url)
    assert proc.returncode == 0, proc.stderr
    if session_files():
        assert_secret_kept()


# -- :load --------------------------------------------------------------------------------------
def test_load_starts_a_new_autosave_session(server):
    other = make_saved_file(server)
    chat(server, SECRET, f":load {other}", "Say hi.")
    assert_secret_kept()
    assert_new_session_for("Say hi.")
    assert "Other topic." in next(iter(holding("Say hi.").values()))


def test_load_in_a_resumed_session_keeps_the_resumed_file(server):
    chat(server, SECRET)
    other = make_saved_file(server)
    chat(server, f":load {other}", "Say hi.", args=("--resume",))
    assert_secret_kept()
    assert_new_session_for("Say hi.")


# -- :resume ------------------------------------------------------------------------------------
def test_resume_command_keeps_the_session_it_leaves(server):
    chat(server, "Alpha first.")
    (alpha_file,) = session_files()
    chat(server, SECRET, f":resume {alpha_file.stem}", "Say hi.")
    assert_secret_kept()
    assert "Alpha first." in session_texts()[alpha_file.name]


def test_clear_history_after_resume_keeps_the_resumed_file(server):
    chat(server, SECRET)
    chat(server, ":clh", "Say hi.", args=("--resume",))
    assert_secret_kept()
    assert_new_session_for("Say hi.")


# -- pipe runs and "last" -------------------------------------------------------------------------
def test_interactive_session_is_resumed(server):
    """Sanity (passes today): what an interactive session said comes back with --resume."""
    chat(server, "Alpha first.")
    proc = run_pipe(":his\n", "--endpoint", server.url, "--resume")
    assert proc.returncode == 0, proc.stderr
    assert "Alpha first." in proc.stdout + proc.stderr


def test_pipe_run_is_not_the_last_session(server):
    chat(server, "Alpha first.")
    time.sleep(1.1)  # session times have one-second resolution
    server.script = echo
    proc = run_pipe("Beta from a pipe.\n", "--endpoint", server.url)
    assert proc.returncode == 0, proc.stderr
    proc = run_pipe(":his\n", "--endpoint", server.url, "--resume")
    shown = proc.stdout + proc.stderr
    assert "Alpha first." in shown, shown
    assert "Beta from a pipe." not in shown, shown
