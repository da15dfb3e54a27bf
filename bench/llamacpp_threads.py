"""Decode threads of the llama.cpp engine: llama-cpp-python's default (os.cpu_count() // 2, which assumes
two hardware threads per core) against qwenchat's (the physical cores this process may use), on the demo
GGUF, greedy, the same prompt, interleaved rounds. Each measurement runs in a process of its own: a
llama.cpp engine whose worker thread is still alive (its OpenMP team spins) slows the next one's decode
to the one-thread rate. Prints one JSON line per round and contestant, then a JSON summary (median decode
tok/s and the ratio).

    python bench/llamacpp_threads.py                  # demo GGUF, 128 new tokens, 3 rounds
    python bench/llamacpp_threads.py --gguf FILE.gguf --rounds 5
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from qwenchat.engines.api import GenerationRequest  # noqa: E402
from qwenchat.engines.llamacpp.engine import LlamaCppEngine  # noqa: E402
from qwenchat.engines.llamacpp.load import physical_cores  # noqa: E402

PROMPT = [
    {"role": "user", "content": "Write a Python function that checks whether a string is a palindrome."}
]


def decode_tps(engine: LlamaCppEngine, new_tokens: int) -> float:
    engine.reset()  # the same prefill every time: only decode differs
    settings = {"do_sample": False, "max_new_tokens": new_tokens}
    chunks = list(engine.stream(GenerationRequest(PROMPT, settings), threading.Event()))
    if chunks[-1].error:
        raise SystemExit(chunks[-1].error)
    return chunks[-1].stats.decode_tps


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--gguf", help="GGUF file (default: the demo's)")
    ap.add_argument("--new-tokens", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--one", type=int, metavar="THREADS", help=argparse.SUPPRESS)  # a measuring child
    args = ap.parse_args()
    if args.one:
        engine = LlamaCppEngine(args.gguf, n_ctx=1024, n_threads=args.one)
        print(decode_tps(engine, args.new_tokens))
        return
    if args.gguf is None:
        from qwenchat.models.demo import ensure_gguf

        args.gguf = ensure_gguf()
    contestants = {
        "llama-cpp-python default": max(1, (os.cpu_count() or 2) // 2),
        "qwenchat (physical cores)": physical_cores(),
    }
    rates: dict[str, list[float]] = {name: [] for name in contestants}
    for round_ in range(1, args.rounds + 1):
        for name, threads in contestants.items():
            cmd = [sys.executable, __file__, "--gguf", str(args.gguf), "--new-tokens", str(args.new_tokens)]
            done = subprocess.run([*cmd, "--one", str(threads)], capture_output=True, text=True, check=True)
            rates[name].append(float(done.stdout.strip().splitlines()[-1]))
            row = {"round": round_, "contestant": name, "threads": threads}
            print(json.dumps({**row, "decode_tps": round(rates[name][-1], 2)}), flush=True)
    medians = {name: statistics.median(r) for name, r in rates.items()}
    base, ours = medians.values()
    print(
        json.dumps(
            {
                "summary": {
                    name: {"threads": contestants[name], "decode_tps": round(m, 2)}
                    for name, m in medians.items()
                },
                "speedup": round(ours / base, 3),
                "new_tokens": args.new_tokens,
                "cpus": os.cpu_count(),
            }
        )
    )


if __name__ == "__main__":
    main()
