"""Multi-turn time to first token for the llama.cpp engine, on bench/multiturn.py's conversation.

Greedy, N new tokens per turn (llama.cpp has no min_new_tokens: an answer may end sooner at EOS).
Prints one JSON line per turn, then after the last turn the same request again with the cache reset
(the no-reuse baseline), then a JSON summary.

    python bench/multiturn_llamacpp.py                 # the demo GGUF
    python bench/multiturn_llamacpp.py --gguf FILE     # any GGUF with a chat template
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import threading
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from multiturn import QUESTIONS, SYSTEM  # noqa: E402

from qwenchat.engine_api import GenerationRequest, TurnStats  # noqa: E402
from qwenchat.engine_llamacpp import LlamaCppEngine  # noqa: E402


def row(turn: int | str, st: TurnStats) -> dict:
    return {
        "contestant": "llamacpp",
        "turn": turn,
        "prompt_tokens": st.prompt_tokens,
        "reused_tokens": st.reused_tokens,
        "prefilled_tokens": st.prefilled_tokens,
        "generated_tokens": st.generated_tokens,
        "ttft_s": round(st.ttft_s, 4),
        "decode_tps": round(st.decode_tps, 2),
        "finish_reason": st.finish_reason,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--gguf", help="a GGUF file (default: the demo model)")
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--turns", type=int, default=10)
    ap.add_argument("--n-ctx", type=int, default=4096)
    ap.add_argument("--threads", type=int, default=None, help="default: all cores")
    args = ap.parse_args()

    if args.gguf:
        gguf = Path(args.gguf)
    else:
        from qwenchat.demo import ensure_gguf

        gguf = ensure_gguf()
    threads = args.threads or os.cpu_count() or 1
    engine = LlamaCppEngine(gguf, n_ctx=args.n_ctx, n_threads=threads)
    settings = {"do_sample": False, "max_new_tokens": args.new_tokens}
    messages = [{"role": "system", "content": SYSTEM}]
    rows = []
    request = None
    for turn, question in enumerate(QUESTIONS[: args.turns]):
        messages.append({"role": "user", "content": question})
        request = GenerationRequest(messages=list(messages), settings=settings)
        chunks = list(engine.stream(request, threading.Event()))
        end = chunks[-1]
        if end.error:
            raise SystemExit(f"turn {turn}: {end.error}")
        messages.append({"role": "assistant", "content": "".join(c.text for c in chunks)})
        rows.append(row(turn, end.stats))
        print(json.dumps(rows[-1]), flush=True)

    engine.reset()  # the last turn again from an empty cache: what it costs without prefix reuse
    cold = list(engine.stream(request, threading.Event()))[-1].stats
    print(json.dumps(row("last-cold", cold)), flush=True)

    summary = {
        "summary": True,
        "model": engine.name,
        "threads": threads,
        "n_ctx": args.n_ctx,
        "new_tokens_per_turn": args.new_tokens,
        "turns": len(rows),
        "ttft_turn_last_over_first": round(rows[-1]["ttft_s"] / rows[0]["ttft_s"], 3),
        "ttft_last_warm_over_cold": round(rows[-1]["ttft_s"] / cold.ttft_s, 3),
        "ttft_last_warm_s": rows[-1]["ttft_s"],
        "ttft_last_cold_s": round(cold.ttft_s, 4),
        "decode_tps_median": round(statistics.median(r["decode_tps"] for r in rows), 2),
    }
    print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
