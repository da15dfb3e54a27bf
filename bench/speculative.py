"""Prompt lookup vs plain decoding on the 10-turn coding conversation of bench/multiturn.py, both in-process
engines, greedy. Each turn is answered twice on the same history, without and with lookup (the second run
finds all but the last prompt token cached, as a retry does), so both see the same machine moment; the
answers must be identical. One JSON line per turn per engine, then a JSON summary with the targets:
>= 1.5x decode tok/s on the turns that rewrite earlier code, >= 0.95x on the others.

    python bench/speculative.py                       # demo model, float32 transformers + the demo GGUF
    python bench/speculative.py --engines llama.cpp --lookup 8 --new-tokens 256
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from multiturn import QUESTIONS, SYSTEM  # noqa: E402

from qwenchat.engines.api import GenerationRequest, TurnStats  # noqa: E402

REWRITE_TURNS = {2, 3, 7}  # 1-based: the turns that ask to change the code written before


def answer(engine, messages: list[dict], settings: dict) -> tuple[str, TurnStats]:
    chunks = list(engine.stream(GenerationRequest(list(messages), settings), threading.Event()))
    if chunks[-1].error:
        raise SystemExit(f"{engine.name}: {chunks[-1].error}")
    return "".join(c.text for c in chunks), chunks[-1].stats


def make_engine(kind: str, args):
    if kind == "transformers":
        from qwenchat.engines.transformers.engine import TransformersEngine
        from qwenchat.models.loader import LoadOptions, load, resolve

        loaded = load(resolve(args.checkpoint), LoadOptions(cpu_only=True, dtype=args.dtype))
        return TransformersEngine(loaded.model, loaded.tokenizer, loaded.name)
    from qwenchat.engines.llamacpp.engine import LlamaCppEngine
    from qwenchat.models.demo import ensure_gguf

    return LlamaCppEngine(args.gguf or ensure_gguf(), n_ctx=args.n_ctx)


def run_engine(kind: str, args) -> list[dict]:
    engine = make_engine(kind, args)
    history: list[dict] = [{"role": "system", "content": SYSTEM}]
    rows = []
    plain_settings = {"do_sample": False, "max_new_tokens": args.new_tokens}
    lookup_settings = {**plain_settings, "prompt_lookup_num_tokens": args.lookup}
    for turn, question in enumerate(QUESTIONS[: args.turns], start=1):
        history.append({"role": "user", "content": question})
        base_text, base = answer(engine, history, plain_settings)
        fast_text, fast = answer(engine, history, lookup_settings)
        row = {
            "engine": kind,
            "turn": turn,
            "rewrite": turn in REWRITE_TURNS,
            "generated_tokens": base.generated_tokens,
            "plain_tps": round(base.decode_tps, 2),
            "lookup_tps": round(fast.decode_tps, 2),
            "speedup": round(fast.decode_tps / base.decode_tps, 3) if base.decode_tps else None,
            "drafted": fast.drafted_tokens,
            "accepted": fast.accepted_tokens,
            "identical": fast_text == base_text,
        }
        print(json.dumps(row), flush=True)
        rows.append(row)
        history.append({"role": "assistant", "content": base_text})
    return rows


def summary(kind: str, rows: list[dict]) -> dict:
    def gmean(xs: list[float]) -> float | None:
        return round(statistics.geometric_mean(xs), 3) if xs else None

    rewrite = [r["speedup"] for r in rows if r["rewrite"] and r["speedup"]]
    other = [r["speedup"] for r in rows if not r["rewrite"] and r["speedup"]]
    return {
        "engine": kind,
        "rewrite_speedup_gmean": gmean(rewrite),
        "other_speedup_gmean": gmean(other),
        "rewrite_target_met": bool(rewrite) and min(rewrite) >= 1.5,
        "other_target_met": bool(other) and min(other) >= 0.95,
        "all_identical": all(r["identical"] for r in rows),
        "acceptance": round(
            sum(r["accepted"] or 0 for r in rows) / max(1, sum(r["drafted"] or 0 for r in rows)), 3
        ),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("-c", "--checkpoint", default="demo")
    ap.add_argument("--gguf", help="GGUF for the llama.cpp engine (default: the demo's)")
    ap.add_argument("--dtype", default="float32", help="transformers dtype (float32: answers must match)")
    ap.add_argument("--engines", default="transformers,llama.cpp")
    ap.add_argument("--lookup", type=int, default=10, help="prompt_lookup_num_tokens")
    ap.add_argument("--new-tokens", type=int, default=200)
    ap.add_argument("--turns", type=int, default=10)
    ap.add_argument("--n-ctx", type=int, default=4096)
    args = ap.parse_args()
    results = []
    for kind in args.engines.split(","):
        rows = run_engine(kind.strip(), args)
        results.append(summary(kind.strip(), rows))
    print(json.dumps({"summary": results, "lookup": args.lookup, "new_tokens": args.new_tokens}))


if __name__ == "__main__":
    main()
