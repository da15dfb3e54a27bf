"""End to end on the real demo model: the installed command, through a pipe and in a pseudo-terminal."""

from __future__ import annotations

import subprocess
import time

from tests.support.pty_driver import QWENCHAT, Pty


def run_piped(stdin: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*QWENCHAT, "--demo", *args], input=stdin, capture_output=True, text=True, timeout=300
    )


def test_piped_session(demo_process):
    proc = run_piped(
        "Write a Python function that adds two numbers.\n:seed 7\n:seed\n:his\n",
        "--temperature",
        "0",
        "--max-new-tokens",
        "48",
    )
    assert proc.returncode == 0, proc.stderr
    # stdout holds the answer only; the commands' output goes to stderr
    assert "def " in proc.stdout and "seed: 7" in proc.stderr and "[assistant]" in proc.stderr
    assert "seed: 7" not in proc.stdout and "[assistant]" not in proc.stdout
    assert "\x1b" not in proc.stdout and "Traceback" not in proc.stderr


def test_piped_conf_reaches_the_model(demo_process):
    proc = run_piped(":conf max_new_tokens=3 temperature=0\n:stats on\nSay hello.\n:conf temperature=abc\n")
    assert proc.returncode == 1, proc.stderr  # the last line failed: scripts learn it from the status
    assert "3 tok · length" in proc.stderr
    assert "error: temperature must be float" in proc.stderr
    assert "error" not in proc.stdout and "3 tok ·" not in proc.stdout


def test_bad_model_path_is_one_line(tmp_path):
    proc = subprocess.run(
        [*QWENCHAT, "-c", str(tmp_path / "nope")],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error:") and "Traceback" not in proc.stderr


def test_ctrl_c_mid_answer_in_a_terminal(demo_process):
    with Pty("--demo", "--no-autosave") as t:
        pos = t.read_until("›".encode())
        t.send(b"Write a long essay about the history of the Python programming language.\r")
        pos = t.read_until("●".encode(), start=pos)  # the answer's header: the prompt has returned
        pos = t.read_until(b"Python", start=pos)  # and the answer is streaming
        t0 = time.time()
        t.send(b"\x03")
        pos = t.read_until(b"interrupted", start=pos)
        pos = t.read_until("›".encode(), start=pos)
        assert time.time() - t0 < 10  # the prompt is back at once, not after the answer
        t.send(b":his\r")
        pos = t.read_until(b"(interrupted)", start=pos)
        t.send(b":q\r")
        assert t.finish(180) == 0


def test_autosave_survives_kill_9(demo_process):
    # conftest points QWENCHAT_DATA_DIR at a fresh directory; both processes inherit it
    with Pty("--demo", "--max-new-tokens", "8", "--temperature", "0") as t:
        pos = t.read_until("›".encode())
        t.send(b"Name one prime number.\r")
        pos = t.read_until("●".encode(), start=pos)
        t.read_until("›".encode(), start=pos)  # the turn is complete
    # leaving the block killed it (SIGKILL): no chance to save anything on the way out
    proc = run_piped(":his\n", "--resume", "last")
    assert proc.returncode == 0, proc.stderr
    assert "Name one prime number." in proc.stderr and "[assistant]" in proc.stderr  # :his: stderr


def test_retry_samples_a_new_answer_and_reuses_the_prefix(demo_loaded, out, make_repl):
    from qwenchat.engines.transformers.engine import TransformersEngine
    from qwenchat.settings import Settings

    engine = TransformersEngine(demo_loaded.model, demo_loaded.tokenizer, demo_loaded.name)
    app = make_repl(engine, out, settings=Settings({**engine.default_settings(), "max_new_tokens": 24}))
    app.session.settings.apply("temperature=1.0")
    app.handle_line("Invent a name for a cat.")
    first = app.session.conversation.messages[-1].content
    app.handle_line(":retry 4242")
    second = app.session.conversation.messages[-1].content
    assert first != second and len(app.session.conversation.messages) == 2
    assert app.session.last_stats.reused_tokens > 0  # the system prompt and question came from the cache


def test_endpoint_that_is_down_is_one_line():
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    t0 = time.time()
    proc = subprocess.run(
        [*QWENCHAT, "--endpoint", f"http://127.0.0.1:{port}"],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=60,
    )
    assert proc.returncode == 2 and time.time() - t0 < 30
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error:") and "Traceback" not in proc.stderr
