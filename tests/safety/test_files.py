"""Files: the input history and the data directory are private; a session file with a
lone surrogate is refused (or shown visibly) and never breaks :his or autosave; two processes on one session
lose no turn; settings JSON cannot store are refused at :conf, so autosave keeps working.
"""

from __future__ import annotations

import json
import math
import stat
from pathlib import Path
from typing import Any

import pytest

from tests.support.cli_harness import (
    PROMPT,
    TRACEBACK,
    ChatServer,
    PipeSession,
    PtyRun,
    cli_env,
    decode,
    edit_session,
    error_lines,
    make_session,
    messages,
    parallel,
    run_pipe,
    saved_texts,
    sessions,
    terminal_problems,
    visible,
    wait_saved,
)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# -- private files ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def typed_home(tmp_path_factory) -> Path:
    """A terminal session (the input history is only kept there) with a fresh data dir, umask 022."""
    home = tmp_path_factory.mktemp("private")
    with ChatServer() as server, PtyRun(["--endpoint", server.url], cli_env(home)) as t:
        t.wait_for(PROMPT, timeout=30)
        t.turn("a private thought", "ECHO a private thought", timeout=10)
        t.send(b"\x04")
        assert t.finish(10) == 0
    return home


def test_input_history_file_is_private(typed_home) -> None:
    history = typed_home / "data" / "history"
    assert history.exists() and "a private thought" in history.read_text()
    assert mode(history) == 0o600, oct(mode(history))


def test_data_dir_is_private(typed_home) -> None:
    assert mode(typed_home / "data") == 0o700, oct(mode(typed_home / "data"))


def test_sanity_sessions_are_private_today(typed_home) -> None:
    folder = typed_home / "data" / "sessions"
    files = list(folder.glob("*.json"))
    assert mode(folder) == 0o700 and len(files) == 1 and mode(files[0]) == 0o600


# -- a lone surrogate in a session file ---------------------------------------------------------------
@pytest.fixture(scope="module")
def surrogate_runs(tmp_path_factory) -> dict[str, Any]:
    """A real session whose answer is edited to "A\\ud800B" (json writes the escape \\ud800): :load of it
    in pipe mode, and --resume of it in a terminal; each then runs :his and one more turn."""
    base = tmp_path_factory.mktemp("surrogate")
    with ChatServer() as server:
        path = make_session(base, server, ["first question"])

        def poison(data: dict) -> None:
            data["conversation"]["messages"][-1]["content"] = "A\ud800B"

        edit_session(path, poison)
        assert "\\ud800" in path.read_text()
        crafted = base / "crafted.json"
        crafted.write_text(path.read_text())
        session_id = json.loads(path.read_text())["id"]
        path.unlink()  # the copy in sessions/ is for --resume only: make it again for that home
        resume_home = base / "resume"
        (resume_home / "data" / "sessions").mkdir(parents=True)
        (resume_home / "data" / "sessions" / path.name).write_text(crafted.read_text())

        def load_in_pipe(_: object) -> Any:
            lines = [f":load {crafted}", ":his", "after the load"]
            return run_pipe(["--endpoint", server.url], lines, cli_env(base / "load"), merged=True)

        def resume_in_terminal(_: object) -> Any:
            with PtyRun(["--endpoint", server.url, "--resume", session_id], cli_env(resume_home)) as t:
                notes = []
                try:
                    t.wait_for(PROMPT, timeout=30)
                    t.type(":his")
                    t.settle(0.3)
                    t.turn("after the resume", "ECHO after the resume", timeout=10)
                except AssertionError as exc:
                    notes.append(str(exc)[:300])
                t.send(b"\x04")
                return t.finish(10), t.out, notes

        load, resume = parallel(lambda f: f(None), [load_in_pipe, resume_in_terminal], workers=2)
    return {"load": load, "resume": resume, "load_home": base / "load", "resume_home": resume_home}


def test_load_of_lone_surrogate_is_refused_or_visible_and_autosave_lives(surrogate_runs) -> None:
    run = surrogate_runs["load"]
    text = run.stdout
    # A refused :load makes the exit status 1 once every line has run.
    assert TRACEBACK not in text and run.rc == (1 if error_lines(text) else 0), text[-1500:]
    assert len(error_lines(text)) <= 1, error_lines(text)
    assert "ECHO after the load" in text, text[-800:]
    assert "autosave failed" not in text, text[-800:]
    assert wait_saved(surrogate_runs["load_home"], "after the load")


def test_resume_of_lone_surrogate_then_his_keeps_the_repl(surrogate_runs) -> None:
    rc, out, notes = surrogate_runs["resume"]
    text = decode(out)
    assert TRACEBACK not in text and rc == 0, (rc, notes, text[-1500:])
    assert "ECHO after the resume" in visible(out), notes
    assert "autosave failed" not in visible(out)
    assert wait_saved(surrogate_runs["resume_home"], "after the resume")
    assert not terminal_problems(out)


# -- two processes on one session ------------------------------------------------------------------------
NOTICE_WORDS = ("lock", "already open", "in use", "another", "elsewhere", "fork", "new session", "copy of")


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory) -> dict[str, Any]:
    home = tmp_path_factory.mktemp("two")
    with ChatServer() as server:
        path = make_session(home, server, ["the shared start"])
        session_id = json.loads(path.read_text())["id"]
        args = ["--endpoint", server.url, "--resume", session_id]
        a = PipeSession(args, cli_env(home))
        b = PipeSession(args, cli_env(home))
        answered: list[str] = []
        for n in range(5):
            who, name = (a, "a") if n % 2 == 0 else (b, "b")
            msg = f"turn {n} from {name}"
            if who.proc.poll() is not None:
                continue  # refused to start (a lock): its turns are simply never asked
            who.send_line(msg)
            try:
                who.wait_for(f"ECHO {msg}", timeout=10)
                answered.append(msg)
            except AssertionError:
                pass
        rc_a, rc_b = a.close(), b.close()
    return {"home": home, "answered": answered, "a": a.text, "b": b.text, "rcs": (rc_a, rc_b)}


def test_two_processes_on_one_session_lose_no_turn(two_processes) -> None:
    on_disk = [m.get("content") for s in sessions(two_processes["home"]) for m in messages(s)]
    lost = [m for m in two_processes["answered"] if m not in on_disk]
    assert two_processes["answered"], (two_processes["a"], two_processes["b"])
    assert not lost, f"answered but no longer on disk: {lost}"


def test_the_second_process_says_so(two_processes) -> None:
    said = (two_processes["a"] + two_processes["b"]).lower()
    assert any(w in said for w in NOTICE_WORDS), two_processes["b"][-800:]


# -- settings JSON cannot store ---------------------------------------------------------------------------
BAD_CONF = ["temperature=1e309", "max_time=1e309", "suppress_tokens={1,2}", "top_h=1j"]


def finite(obj: Any) -> bool:
    if isinstance(obj, float):
        return math.isfinite(obj)
    if isinstance(obj, dict):
        return all(finite(v) for v in obj.values())
    if isinstance(obj, list):
        return all(finite(v) for v in obj)
    return True


@pytest.fixture(scope="module")
def conf_runs(tmp_path_factory) -> dict[str, Any]:
    base = tmp_path_factory.mktemp("conf")

    def one(pair: str) -> tuple[Any, list[dict[str, Any]], Path]:
        home = base / pair.split("=")[0]
        with ChatServer() as server:
            lines = ["before", f":conf {pair}", "after the setting"]
            run = run_pipe(["--endpoint", server.url], lines, cli_env(home), merged=True)
            return run, list(server.requests), home

    return dict(
        zip([*BAD_CONF, "temperature=0.5"], parallel(one, [*BAD_CONF, "temperature=0.5"]), strict=True)
    )


@pytest.mark.parametrize("pair", BAD_CONF)
def test_conf_refuses_values_json_cannot_store(conf_runs, pair: str) -> None:
    run, requests, home = conf_runs[pair]
    text = run.stdout
    assert TRACEBACK not in text and run.rc == 1, text[-1200:]  # the refused :conf line
    conf_part = text[text.find("ECHO before") : text.find("ECHO after the setting")]
    assert len(error_lines(conf_part)) == 1, f"{pair}: not refused with one line: {conf_part!r}"
    assert "ECHO after the setting" in text
    assert all(finite(r) for r in requests), f"{pair}: a non-finite number was sent to the server"
    assert "autosave failed" not in text, text[-600:]
    assert any("after the setting" in t for t in saved_texts(home)), "autosave stopped"


def test_sanity_conf_good_value_autosaves_today(conf_runs) -> None:
    run, requests, home = conf_runs["temperature=0.5"]
    assert run.rc == 0 and not error_lines(run.stdout) and "ECHO after the setting" in run.stdout
    assert requests[-1].get("temperature") == 0.5
    assert any("after the setting" in t for t in saved_texts(home))
