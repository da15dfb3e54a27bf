"""Batch runs end to end: the real demo model through the CLI in-process (one loaded model shared), and a
tiny random-weight Qwen2 (real tokenizer) in a subprocess for Ctrl-C and kill -9 in the middle of a batch."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from qwenchat.cli.app import main
from qwenchat.environment import Environment
from tests.support.cli_harness import QWENCHAT, cli_env

PROMPTS = 'What is 2+2?\nName a colour.\n"""\nSay hello\nin French.\n"""\n'
GREEDY = ["--seeds", "1,2", "--max-new-tokens", "3", "--temperature", "0"]


@pytest.fixture(scope="module")
def demo_engine(demo_loaded):
    from qwenchat.engines.transformers.engine import TransformersEngine

    engine = TransformersEngine(demo_loaded.model, demo_loaded.tokenizer, demo_loaded.name)
    return engine, {"model": demo_loaded.name, "device": "cpu", "dtype": "bf16", "extra": []}


def qwenchat(argv: list[str], made=None) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    env = Environment(
        stdin=io.StringIO(""),
        stdout=out,
        stderr=err,
        stdin_isatty=False,
        stdout_isatty=False,
        engine_factory=(lambda args, renderer: made) if made else None,
    )
    rc = main(argv, env)
    return rc, out.getvalue(), err.getvalue()


def records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_batch_rerun_diff_and_edited_system(demo_engine, tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text(PROMPTS)
    first, second, edited = tmp_path / "a.jsonl", tmp_path / "b.jsonl", tmp_path / "c.jsonl"
    rc, _, err = qwenchat(["batch", str(prompts), "--demo", "--out", str(first), *GREEDY], demo_engine)
    assert rc == 0, err
    got = records(first)
    assert len(got) == 6 and "6 records written" in err
    assert [r["id"] for r in got] == ["p1/s1", "p1/s2", "p2/s1", "p2/s2", "p3/s1", "p3/s2"]
    assert got[4]["prompt"] == "Say hello\nin French."
    for r in got:
        assert (
            r["answer"].strip()
            and 0 < r["tokens"]["generated"] <= 3
            and r["finish_reason"] in ("stop", "length")
        )
        assert r["model"] == demo_engine[0].name and r["engine"] == "transformers"
        assert r["settings"]["temperature"] == 0 and r["ttft_s"] > 0 and r["qwenchat_version"]
    assert [r["answer"] for r in got[0::2]] == [
        r["answer"] for r in got[1::2]
    ]  # greedy: seed changes nothing

    # the same batch again into the same file: everything is done already
    rc, _, err = qwenchat(["batch", str(prompts), "--demo", "--out", str(first), *GREEDY], demo_engine)
    assert rc == 0 and "0 records written" in err and "6 already there" in err and len(records(first)) == 6

    rc, _, err = qwenchat(["batch", str(prompts), "--demo", "--out", str(second), *GREEDY], demo_engine)
    assert rc == 0, err
    assert [r["answer"] for r in records(second)] == [r["answer"] for r in got]
    rc, out, err = qwenchat(["diff", str(first), str(second)])
    assert rc == 0, out + err
    assert "6 identical, 0 changed" in out

    system = ["--system", "Answer only with the single word BANANA, whatever is asked."]
    rc, _, err = qwenchat(
        ["batch", str(prompts), "--demo", "--out", str(edited), *GREEDY, *system], demo_engine
    )
    assert rc == 0, err
    rc, out, err = qwenchat(["diff", str(first), str(edited)])
    assert rc == 1, out + err
    assert "changed: prompt 1" in out and "with a changed prompt" in out

    # the edited run's file cannot be resumed by the first batch: another batch wrote it
    rc, _, err = qwenchat(["batch", str(prompts), "--demo", "--out", str(edited), *GREEDY], demo_engine)
    assert rc == 2 and "another batch" in err and len(records(edited)) == 6


def test_batch_refusals_before_anything_runs(demo_engine, tmp_path):
    prompts = tmp_path / "p.txt"
    prompts.write_text("Hello {{name}}\n")
    out = tmp_path / "r.jsonl"
    cases = [
        (["batch", str(prompts), "--demo", "--out", str(out)], "{{name}} has no value"),
        (["batch", str(prompts), "--demo"], "qwenchat batch needs --out"),
        (["--demo", "--out", str(out)], "--out belongs to `qwenchat batch`"),
        (["--demo", "--batch", str(prompts), "--out", str(out)], "--batch is now a command: qwenchat batch"),
        (["batch", str(prompts), "--out", str(out), "--resume"], "--resume reopens a chat"),
    ]
    for argv, needle in cases:
        rc, _, err = qwenchat(argv, demo_engine)
        assert rc == 2 and needle in err and err.count("\n") == 1, err
    prompts.write_text("Hello\n")
    for grid, needle in (("temprature=0,1", "did you mean temperature"), ("adapter=off,on", "adapter")):
        rc, _, err = qwenchat(
            ["batch", str(prompts), "--demo", "--out", str(out), "--grid", grid], demo_engine
        )
        assert rc == 2 and needle in err and err.count("\n") == 1, err
    assert not out.exists()
    rc, _, err = qwenchat(["diff", str(out), str(prompts)])
    assert rc == 2 and "no such file" in err


def _start(args: list[str], home: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [*QWENCHAT, *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=cli_env(home, OMP_NUM_THREADS="1"),  # two shared cores: torch's spinning threads starve
    )


def _count(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


def _jsonl_prompts(path: Path, n: int, tokens: int) -> None:
    """Prompts whose answers are `tokens` long whatever a random model says (min_new_tokens per prompt)."""
    settings = json.dumps({"min_new_tokens": tokens, "max_new_tokens": tokens})
    path.write_text("".join(f'{{"prompt": "Count to {i}.", "settings": {settings}}}\n' for i in range(n)))


def test_ctrl_c_stops_within_a_second_and_keeps_finished_records(tiny_model, tmp_path):
    from qwenchat.engines.transformers.engine import TransformersEngine

    model, tok = tiny_model
    made = (
        TransformersEngine(model, tok, "tiny"),
        {"model": "tiny", "device": "cpu", "dtype": "f32", "extra": []},
    )
    prompts, out = tmp_path / "p.jsonl", tmp_path / "r.jsonl"
    _jsonl_prompts(prompts, 6, 2000)  # far longer than the test waits
    sent: list[float] = []

    def press() -> None:
        while _count(out) < 1:
            time.sleep(0.02)
        time.sleep(0.3)  # into the next answer
        sent.append(time.monotonic())
        os.kill(os.getpid(), signal.SIGINT)

    _jsonl_prompts(tmp_path / "short.jsonl", 1, 4)  # the first run is short, the rest long
    prompts.write_text((tmp_path / "short.jsonl").read_text() + prompts.read_text())
    watcher = threading.Thread(target=press, daemon=True)
    watcher.start()
    rc, _, err = qwenchat(["batch", str(prompts), "-c", "tiny", "--out", str(out)], made)
    took = time.monotonic() - sent[0]
    watcher.join()
    assert rc == 130, err
    assert took < 1.0, f"Ctrl-C took {took:.2f} s to stop the batch"
    assert "interrupted: 1 record written" in err and "run the same command again to resume" in err
    assert [r["id"] for r in records(out)] == ["p1/s1234"]


def test_kill_9_mid_batch_loses_and_repeats_nothing(tiny_dir, tiny_process, tmp_path):
    prompts, out = tmp_path / "p.jsonl", tmp_path / "r.jsonl"
    _jsonl_prompts(prompts, 6, 40)
    args = ["batch", str(prompts), "-c", str(tiny_dir), "--cpu-only", "--out", str(out), "--seeds", "1,2"]
    proc = _start(args, tmp_path)
    deadline = time.monotonic() + 300
    while _count(out) < 2:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "no records after 300 s"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    with open(out, "ab") as f:  # a write the kill cut in half (there may be one already: never a whole line)
        f.write(b'{"key": "p6/s2#0000", "answer": "half')
    before = out.read_bytes()
    whole = before[: before.rfind(b"\n") + 1]
    done = {r["id"]: r for r in (json.loads(x) for x in whole.splitlines())}
    assert 2 <= len(done) < 12

    proc = _start(args, tmp_path)
    stdout, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    assert b"cut by a killed write" in err and stdout == b"" and b"Traceback" not in err
    assert f"resuming {out}: {len(done)} of 12".encode() in err
    assert out.read_bytes().startswith(whole)  # every finished record kept, byte for byte
    ids = [r["id"] for r in records(out)]
    assert len(ids) == 12 and len(set(ids)) == 12  # none lost, none repeated
    assert sorted(ids) == sorted(f"p{p}/s{s}" for p in range(1, 7) for s in (1, 2))


def test_batch_with_a_json_schema_records_whether_each_answer_is_valid(tiny_model, tmp_path):
    """--json-schema in a batch: every answer is constrained (a tiny random model still gives valid JSON for
    a bounded schema) and every record says whether it validated; a cut answer says why not."""
    from qwenchat.engines.transformers.engine import TransformersEngine

    model, tok = tiny_model
    made = (
        TransformersEngine(model, tok, "tiny"),
        {"model": "tiny", "device": "cpu", "dtype": "f32", "extra": []},
    )
    schema = Path(__file__).parents[1] / "schemas" / "person.json"
    prompts, out = tmp_path / "p.txt", tmp_path / "r.jsonl"
    prompts.write_text("one\ntwo\n")
    base = ["batch", str(prompts), "-c", "tiny", "--json-schema", str(schema)]
    rc, _, err = qwenchat([*base, "--out", str(out), "--max-new-tokens", "120", "--seeds", "1,2"], made)
    assert rc == 0, err
    recs = records(out)
    assert len(recs) == 4 and all(r["json_valid"] is True for r in recs), recs
    assert all(r["json_check"] == "valid JSON for the schema" for r in recs)
    cut = tmp_path / "cut.jsonl"
    rc, _, err = qwenchat([*base, "--out", str(cut), "--max-new-tokens", "3"], made)
    assert [r["json_valid"] for r in records(cut)] == [False, False], err
