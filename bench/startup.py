"""Startup: `qwenchat --help`, and launch-to-first-prompt against a bare from_pretrained of the same model.

Each figure is the median of several fresh processes, the contestants interleaved. Prints JSON.

    python bench/startup.py [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import os
import pty
import select
import statistics
import subprocess
import sys
import time

BARE = """
import time, torch
from transformers import AutoModelForCausalLM, AutoTokenizer
from qwenchat.models.demo import ensure_demo
d = ensure_demo()
tok = AutoTokenizer.from_pretrained(d)
model = AutoModelForCausalLM.from_pretrained(d, dtype=torch.bfloat16).eval()
"""


def time_cmd(argv: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def time_to_prompt(argv: list[str]) -> float:
    """Launch qwenchat in a pseudo-terminal and stop the clock when its prompt appears."""
    t0 = time.perf_counter()
    pid, fd = pty.fork()
    if pid == 0:
        os.execvp(argv[0], argv)
    out = b""
    try:
        while "›".encode() not in out:
            ready, _, _ = select.select([fd], [], [], 0.05)
            if ready:
                try:
                    out += os.read(fd, 65536)
                except OSError:
                    raise RuntimeError(f"qwenchat exited before its prompt: {out[-500:]!r}") from None
            if time.perf_counter() - t0 > 300:
                raise RuntimeError("no prompt after 300 s")
        return time.perf_counter() - t0
    finally:
        os.kill(pid, 9)
        os.waitpid(pid, 0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    py = sys.executable
    help_s, bare_s, chat_s = [], [], []
    time_cmd([py, "-c", BARE])  # warm the page cache so neither contestant pays for a cold disk
    for _ in range(args.runs):
        help_s.append(time_cmd([py, "-m", "qwenchat", "--help"]))
        bare_s.append(time_cmd([py, "-c", BARE]))
        chat_s.append(time_to_prompt([py, "-m", "qwenchat", "--demo", "--no-autosave"]))
    med = statistics.median
    print(
        json.dumps(
            {
                "runs": args.runs,
                "help_s": round(med(help_s), 3),
                "bare_from_pretrained_s": round(med(bare_s), 3),
                "qwenchat_launch_to_prompt_s": round(med(chat_s), 3),
                "overhead_s": round(med(chat_s) - med(bare_s), 3),
                "targets": {
                    "help_le_0.3s": med(help_s) <= 0.3,
                    "overhead_le_0.5s": med(chat_s) - med(bare_s) <= 0.5,
                },
            }
        )
    )


if __name__ == "__main__":
    main()
