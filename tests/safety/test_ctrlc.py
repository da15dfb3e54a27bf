"""Ctrl-C: no number or timing of Ctrl-C presses ends the process (only Ctrl-D, :q or SIGTERM
do), and every answer that was shown is in the autosave.

A timing sweep in a pseudo-terminal: the scripted server streams each answer at a known pace, so the test
knows when its last word leaves the server and presses Ctrl-C from 30 ms before to 30 ms after that, once or
in bursts, and right after "interrupted" shows. One process runs the whole sweep; when it dies the death is
counted and a fresh one takes the remaining points.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.support.cli_harness import (
    PROMPT,
    TRACEBACK,
    ChatServer,
    PtyRun,
    cli_env,
    decode,
    text_reply,
    visible,
    wait_saved,
)

CHUNKS, STEP = 8, 0.02  # each answer: 8 pieces 20 ms apart, so its end is 140 ms after the request
HEADER = "●".encode()


def answer_text(k: int) -> str:
    return f"BEGIN{k} " + " ".join(f"w{k}x{j}" for j in range(12)) + f" END{k}"


@dataclass(frozen=True)
class Point:
    offset_ms: float  # press time relative to the answer's last byte leaving the server
    presses: int = 1
    gap_ms: float = 6  # between presses of a burst
    after_interrupted: bool = False  # instead: press once mid-answer, then again as "interrupted" shows

    @property
    def id(self) -> str:
        kind = "after-interrupted" if self.after_interrupted else f"x{self.presses}"
        return f"{kind}@{self.offset_ms:+g}ms"


SINGLE = [-30, -20, -10, -5, -2, 0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 23, 26, 30]
POINTS = (
    [Point(ms) for ms in SINGLE]
    + [Point(ms, 2) for ms in (-8, 0, 4, 10, 16)]
    + [Point(ms, 3) for ms in (-4, 6, 14)]
    + [Point(ms, 2, after_interrupted=True) for ms in (0, 3, 8)]
)


@dataclass
class Sweep:
    tries: int = 0
    failures: list[str] = field(default_factory=list)
    final_rc: int | None = None
    final_answered: bool = False


def press_at(t: PtyRun, when: float, point: Point, pos: int) -> None:
    """Ctrl-C at monotonic time `when` (then the rest of a burst); reads the terminal while waiting."""
    if point.after_interrupted:
        _read_until_time(t, when - 0.08)  # mid-answer
        t.send(b"\x03")
        t.wait_for(b"interrupted", timeout=5, start=pos)
        time.sleep(point.offset_ms / 1000)
        t.send(b"\x03")
        return
    _read_until_time(t, when)
    for n in range(point.presses):
        if n:
            time.sleep(point.gap_ms / 1000)
        t.send(b"\x03")


def _read_until_time(t: PtyRun, when: float) -> None:
    while (left := when - time.monotonic()) > 0.004:
        t.pump(min(left - 0.003, 0.05))
    while time.monotonic() < when:
        pass  # the last few ms spinning: sleep() overshoots by about a millisecond


def run_sweep(home: Path, points: list[Point]) -> Sweep:
    result = Sweep()
    replies = [text_reply(answer_text(k), chunks=CHUNKS, step=STEP) for k in range(len(points) + 1)]
    with ChatServer(*replies) as server:
        todo = list(enumerate(points))
        while todo:
            with PtyRun(["--endpoint", server.url], cli_env(home)) as t:
                t.wait_for(PROMPT, timeout=30)
                while todo:
                    k, point = todo.pop(0)
                    result.tries += 1
                    problem = one_point(t, server, home, k, point)
                    if problem:
                        result.failures.append(f"{point.id}: {problem}")
                        break  # whatever state it is in, the next point gets a fresh process
                if not todo:
                    k = len(points)
                    try:
                        t.turn("the last question", f"END{k}", timeout=10)
                        result.final_answered = True
                    except AssertionError:
                        pass
                    t.send(b"\x04")
                    result.final_rc = t.finish(10)
    return result


def one_point(t: PtyRun, server: ChatServer, home: Path, k: int, point: Point) -> str | None:
    """Ask question k, press Ctrl-C per `point`; what went wrong, or None."""
    while not server.arrivals.empty():  # arrival times of earlier turns are of no use now
        server.arrivals.get_nowait()
    pos = len(t.out)
    t.type(f"question {k}")
    try:
        arrived = server.arrivals.get(timeout=5)
    except Exception:
        return "the question never reached the server"
    end = arrived + (CHUNKS - 1) * STEP
    try:
        press_at(t, end + point.offset_ms / 1000, point, pos)
    except AssertionError as exc:
        return f"no 'interrupted' after a press mid-answer: {str(exc)[:200]}"
    t.settle(0.25, timeout=5)  # the prompt is back, or the process is gone
    seg = t.out[pos:]
    shown = visible(seg)
    problems = []
    if not t.alive():
        problems.append(f"the process ended (exit {t.rc})")
    if "error: interrupted" in shown:
        problems.append("printed 'error: interrupted'")
    if TRACEBACK.encode() in seg or b"was never awaited" in seg or b"_ssock" in seg:
        problems.append("printed a traceback or an asyncio error")
    for word in (f"BEGIN{k}", f"END{k}"):
        if word in shown and not wait_saved(home, word, timeout=1.5):
            problems.append(f"{word} was shown but is not in the autosave")
    if not problems and PROMPT not in seg[seg.rfind(HEADER) if HEADER in seg else 0 :]:
        problems.append(f"no prompt after the presses: {decode(seg[-300:])!r}")
    return "; ".join(problems) or None


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> Sweep:
    return run_sweep(tmp_path_factory.mktemp("ctrlc"), POINTS)


def test_ctrl_c_around_the_end_of_an_answer_never_ends_the_process(sweep) -> None:
    assert sweep.tries == len(POINTS)
    assert not sweep.failures, f"{len(sweep.failures)} of {sweep.tries} tries failed: {sweep.failures}"


def test_after_the_sweep_it_still_answers_and_ctrl_d_exits_0(sweep) -> None:
    assert sweep.final_answered and sweep.final_rc == 0, (sweep.final_answered, sweep.final_rc)


def test_sanity_ctrl_c_well_inside_and_well_after_an_answer(tmp_path) -> None:
    """Away from the edge this works today: mid-answer it stops, long after it clears the line."""
    result = run_sweep(tmp_path, [Point(-100), Point(400)])
    assert result.tries == 2 and not result.failures, result.failures
    assert result.final_answered and result.final_rc == 0


def test_ctrl_c_at_the_end_of_a_demo_model_answer(tmp_path, demo_process) -> None:
    """The real demo model: short greedy answers to the same question, timed once without a press, then a
    burst of two presses at that time -40 ms to +40 ms after the answer's header (its end moves with
    the machine)."""
    failures = []
    with PtyRun(["--demo", "--max-new-tokens", "6", "--temperature", "0"], cli_env(tmp_path)) as t:
        t.wait_for(PROMPT, timeout=300)

        def ask(press_after: float | None) -> float:
            pos = len(t.out)
            t.type("Say hi.")
            head = t.wait_for(HEADER, timeout=60, start=pos)
            t0 = time.monotonic()
            if press_after is not None:
                _read_until_time(t, t0 + press_after)
                t.send(b"\x03")
                time.sleep(0.008)
                t.send(b"\x03")  # a burst: the second press lands in whatever the first one started
            t.wait_for(PROMPT, timeout=60, start=head)
            took = time.monotonic() - t0
            t.settle(0.3, timeout=10)
            seg = visible(t.out[pos:])
            if not t.alive() or "error: interrupted" in seg or TRACEBACK in seg:
                failures.append(f"{press_after}: {seg[-200:]!r}")
            return took

        ask(None)
        took = ask(None)
        for offset_ms in (-40, -20, -10, -5, 0, 5, 10, 15, 20, 30, 40):
            if failures:
                break
            ask(max(0.0, took + offset_ms / 1000))
        if t.alive():
            t.send(b"\x04")
        rc = t.finish(60)
    assert not failures and rc == 0, (failures, rc, visible(t.out[-600:]))


def test_ctrl_c_in_a_pipe_run_stops_the_answer_and_the_run(tmp_path: Path) -> None:
    """A script of prompts is stopped as a whole: the answer so far is kept and saved, the rest of the input
    is not run, and the exit status says so (130). Before, the answer stopped and the next line ran."""
    import signal

    from tests.support.cli_harness import PipeSession, saved_texts

    slow = " ".join(f"word{j}" for j in range(60))
    with ChatServer(text_reply(slow, chunks=60, step=0.1), text_reply("SECOND ANSWER")) as server:
        run = PipeSession(["--endpoint", server.url], cli_env(tmp_path))
        run.send_line("first question")
        run.send_line("second question")
        run.wait_for("word3")
        run.proc.send_signal(signal.SIGINT)
        rc = run.close(timeout=10)
    text = run.text
    assert rc == 130, text
    assert "the rest of the input was not run" in text and TRACEBACK not in text
    assert "SECOND ANSWER" not in text and len(server.requests) == 1
    kept = [t for t in saved_texts(tmp_path) if t.startswith("word0")]
    assert kept and "word59" not in kept[0], saved_texts(tmp_path)  # the partial answer, saved
