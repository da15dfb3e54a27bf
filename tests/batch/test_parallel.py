"""`qwenchat batch --parallel N --endpoint URL`: several requests in flight against the scripted server,
records in the prompts' order however the answers finish, resumable after kill -9, Ctrl-C within a second.
No model is loaded: the server answers each prompt with its own text."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest

from qwenchat.cli.app import main
from qwenchat.environment import Environment
from tests.support.cli_harness import QWENCHAT, ChatServer, cli_env, text_reply


def qwenchat(argv: list[str], factory=None) -> tuple[int, str]:
    err = io.StringIO()
    env = Environment(
        stdin=io.StringIO(""),
        stdout=io.StringIO(),
        stderr=err,
        stdin_isatty=False,
        stdout_isatty=False,
        engine_factory=factory,
    )
    return main(argv, env), err.getvalue()


def records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def count(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


class SlowEcho(ChatServer):
    """Answers "ECHO <prompt>" in `chunks` pieces `step` s apart, where `delays[prompt]` (default 0) waits
    first; counts the requests in flight at once, and the order in which answers ended."""

    def __init__(self, delays: dict[str, float] | None = None, *, chunks: int = 2, step: float = 0.01):
        super().__init__()
        self.delays = delays or {}
        self.chunks, self.step = chunks, step
        self.lock = threading.Lock()
        self.now = self.most = 0
        self.answering: list[str] = []  # prompts whose answer is being written (after their delay)
        self.ended: list[str] = []
        self.then = self._slow

    def _slow(self, h: BaseHTTPRequestHandler, body: dict[str, Any]) -> None:
        prompt = body["messages"][-1]["content"]
        with self.lock:
            self.now += 1
            self.most = max(self.most, self.now)
        try:
            if self.release.wait(self.delays.get(prompt, 0.0)):
                return
            self.answering.append(prompt)
            text_reply(f"ECHO {prompt}", chunks=self.chunks, step=self.step)(h, body)
            self.ended.append(prompt)
        finally:
            with self.lock:
                self.now -= 1


def prompts_file(tmp_path: Path, n: int) -> Path:
    path = tmp_path / "prompts.txt"
    path.write_text("".join(f"q{i}\n" for i in range(1, n + 1)))
    return path


def test_records_in_the_prompts_order_with_answers_finishing_out_of_order(tmp_path):
    # The first prompts answer last: each waits longer than those after it.
    delays = {f"q{i}": 0.05 * (9 - i) for i in range(1, 9)}
    with SlowEcho(delays) as server:
        out = tmp_path / "r.jsonl"
        argv = ["batch", str(prompts_file(tmp_path, 8)), "--endpoint", server.url, "--out", str(out)]
        rc, err = qwenchat([*argv, "--parallel", "4", "--seeds", "1,2"])
        assert rc == 0, err
        got = records(out)
        assert [r["id"] for r in got] == [f"p{p}/s{s}" for p in range(1, 9) for s in (1, 2)]
        assert [r["answer"] for r in got] == [f"ECHO q{p}" for p in range(1, 9) for s in (1, 2)]
        assert all(r["finish_reason"] == "stop" and r["engine"] == f"openai:{server.url}" for r in got)
        assert 1 < server.most <= 4  # several in flight, never more than asked
        assert server.ended != sorted(server.ended, key=lambda p: int(p[1:]))  # they did finish out of order
        assert "16 records written" in err

        # The same run again: nothing asked, nothing written twice.
        asked = len(server.requests)
        rc, err = qwenchat([*argv, "--parallel", "4", "--seeds", "1,2"])
        assert rc == 0 and "16 already there" in err and len(server.requests) == asked
        assert len(records(out)) == 16


def test_the_same_records_as_one_at_a_time(tmp_path):
    with SlowEcho() as server:
        one, many = tmp_path / "one.jsonl", tmp_path / "many.jsonl"
        base = ["batch", str(prompts_file(tmp_path, 5)), "--endpoint", server.url, "--grid", "top_k=1,2"]
        assert qwenchat([*base, "--out", str(one)])[0] == 0
        assert qwenchat([*base, "--out", str(many), "--parallel", "3"])[0] == 0
        keep = ("key", "id", "variant", "settings", "messages", "answer", "finish_reason")
        assert [{k: r[k] for k in keep} for r in records(one)] == [
            {k: r[k] for k in keep} for r in records(many)
        ]


def test_a_failed_run_is_reported_and_the_rest_are_written(tmp_path):
    with SlowEcho() as server:
        failing = server.then

        def reply(h: BaseHTTPRequestHandler, body: dict[str, Any]) -> None:
            if body["messages"][-1]["content"] == "q2":
                h.send_error(500, "boom")
                return
            failing(h, body)

        server.then = reply
        out = tmp_path / "r.jsonl"
        rc, err = qwenchat(
            ["batch", str(prompts_file(tmp_path, 4)), "--endpoint", server.url, "--out", str(out)]
            + ["--parallel", "2"]
        )
        assert rc == 1 and "1 run(s) failed (first: p2/s1234" in err
        assert [r["id"] for r in records(out)] == ["p1/s1234", "p3/s1234", "p4/s1234"]


def test_parallel_is_refused_in_one_line_without_an_endpoint(tmp_path):
    def factory(options, renderer):
        raise AssertionError("no engine may be built for a refused batch")

    prompts, out = prompts_file(tmp_path, 2), tmp_path / "r.jsonl"
    for argv, needle in (
        (["--demo", "--parallel", "2"], "--parallel needs --endpoint"),
        (["--endpoint", "http://127.0.0.1:9/v1", "--parallel", "0"], "--parallel must be between 1 and"),
    ):
        rc, err = qwenchat(["batch", str(prompts), "--out", str(out), *argv], factory)
        assert rc == 2 and needle in err and err.count("\n") == 1, err
    assert not out.exists()


def test_ctrl_c_stops_every_request_in_flight_within_a_second(tmp_path):
    # q1 answers at once; the others stream for a minute, so they are in flight when Ctrl-C comes.
    with SlowEcho({f"q{i}": 0.0 for i in range(1, 7)}, chunks=600, step=0.1) as server:
        fast = server.then

        def reply(h: BaseHTTPRequestHandler, body: dict[str, Any]) -> None:
            if body["messages"][-1]["content"] == "q1":
                text_reply("ECHO q1")(h, body)
            else:
                fast(h, body)

        server.then = reply
        out = tmp_path / "r.jsonl"
        sent: list[float] = []

        def press() -> None:
            while count(out) < 1 or server.now < 3:
                time.sleep(0.02)
            sent.append(time.monotonic())
            os.kill(os.getpid(), signal.SIGINT)

        watcher = threading.Thread(target=press, daemon=True)
        watcher.start()
        rc, err = qwenchat(
            ["batch", str(prompts_file(tmp_path, 6)), "--endpoint", server.url, "--out", str(out)]
            + ["--parallel", "3"]
        )
        took = time.monotonic() - sent[0]
        watcher.join()
        assert rc == 130, err
        assert took < 1.0, f"Ctrl-C took {took:.2f} s to stop the batch"
        assert "interrupted: 1 record written" in err
        assert [r["id"] for r in records(out)] == ["p1/s1234"]
        deadline = time.monotonic() + 10
        while server.now and time.monotonic() < deadline:  # the server sees each hang-up at its next write
            time.sleep(0.05)
        assert server.now == 0 and len(server.requests) == 4  # q1, then three in flight, nothing after


def _start(args: list[str], home: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [*QWENCHAT, *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=cli_env(home),
    )


def test_kill_9_mid_run_loses_and_repeats_nothing_and_keeps_the_order(tmp_path):
    n = 12
    delays = {f"q{i}": 0.4 if i % 3 == 0 else 0.05 for i in range(1, n + 1)}  # stragglers hold the order
    with SlowEcho(delays) as server:
        out = tmp_path / "r.jsonl"
        args = ["batch", str(prompts_file(tmp_path, n)), "--endpoint", server.url, "--out", str(out)]
        args += ["--parallel", "4"]
        proc = _start(args, tmp_path)
        deadline = time.monotonic() + 60
        while count(out) < 3:
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "no records after 60 s"
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)
        before = out.read_bytes()
        whole = before[: before.rfind(b"\n") + 1]
        ids = [json.loads(x)["id"] for x in whole.splitlines()]
        assert 3 <= len(ids) < n and ids == [f"p{i}/s1234" for i in range(1, len(ids) + 1)]  # a prefix
        with open(out, "ab") as f:  # a write the kill cut in half
            f.write(b'{"key": "p12/s1234#0000", "answer": "half')

        proc = _start(args, tmp_path)
        stdout, stderr = proc.communicate(timeout=60)
        assert proc.returncode == 0, stderr
        assert b"cut by a killed write" in stderr and stdout == b"" and b"Traceback" not in stderr
        assert out.read_bytes().startswith(whole)  # every finished record kept, byte for byte
        got = records(out)
        assert [r["id"] for r in got] == [f"p{i}/s1234" for i in range(1, n + 1)]  # none lost or repeated
        assert [r["answer"] for r in got] == [f"ECHO q{i}" for i in range(1, n + 1)]


@pytest.mark.parametrize("workers", [2, 5])
def test_the_window_bounds_what_waits_in_memory(tmp_path, workers):
    """A straggler at the front: the others run ahead by at most the window, then wait for it."""
    from qwenchat.batch.parallel import WINDOW_PER_WORKER

    with SlowEcho({"q1": 1.0}) as server:
        out = tmp_path / "r.jsonl"
        n = WINDOW_PER_WORKER * workers + 6
        asked_while_q1_ran: list[int] = []

        def watch() -> None:
            while "q1" not in server.answering:
                asked_while_q1_ran.append(len(server.requests))
                time.sleep(0.01)

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        rc, err = qwenchat(
            ["batch", str(prompts_file(tmp_path, n)), "--endpoint", server.url, "--out", str(out)]
            + ["--parallel", str(workers)]
        )
        watcher.join()
        assert rc == 0, err
        assert max(asked_while_q1_ran) <= WINDOW_PER_WORKER * workers
        assert [r["id"] for r in records(out)] == [f"p{i}/s1234" for i in range(1, n + 1)]


def test_one_connecting_line_and_a_failed_extra_connection_is_one_error(tmp_path):
    with SlowEcho() as server:
        out = tmp_path / "r.jsonl"
        argv = ["batch", str(prompts_file(tmp_path, 3)), "--endpoint", server.url, "--out", str(out)]
        rc, err = qwenchat([*argv, "--parallel", "4"])
        assert rc == 0 and err.count("connecting to") == 1, err

        asked: list[str | None] = []

        def factory(options, renderer):
            from qwenchat.cli.engine import make_engine

            asked.append(options.checkpoint_path)
            if len(asked) == 3:  # the third connection fails: its error shows, once
                renderer.error("cannot connect to the server")
                return None
            return make_engine(options, renderer)

        rc, err = qwenchat([*argv, "--parallel", "4"], factory)
        assert rc == 2 and err.count("\n") == 2 and "error: cannot connect to the server" in err, err
        assert asked == [None, "served-model", "served-model"]  # the others ask for the model the first chose
