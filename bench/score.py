"""`:score`: what scoring a given answer costs against generating it, and how exactly it agrees with `:probs`.

One process, one loaded model per engine; rounds interleaved so machine noise hits both alike. Per engine
(transformers on the demo model, and llama.cpp on the demo GGUF when llama-cpp-python is installed):

* a greedy answer of `--new-tokens` tokens with `:probs on`, then `:score` of that answer (its prompt served
  from the kept cache): the answer's decode tok/s against the score's tokens/s (the score computes the answer
  one token at a time, in the shapes the turn decoded it in, so it costs about a decode);
* the largest |score - :probs| over the answer's tokens, and the difference of the totals (0: the same bits);
* the prompt tokens the score reused from the cache.

Prints one JSON line per measurement, then a JSON summary.

    python bench/score.py
    python bench/score.py --new-tokens 128 --rounds 3
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from qwenchat.chat.session import ChatSession  # noqa: E402

PROMPT = "Explain in a few sentences how a hash map works."


def one_round(engine, n: int) -> dict:
    engine.reset()
    chat = ChatSession(engine)
    chat.settings.update({"do_sample": False, "max_new_tokens": n, "repetition_penalty": 1.0})
    chat.probs_k = 5
    result = chat.send(PROMPT)
    probs = chat.conversation.messages[-1].probs or []
    t0 = time.perf_counter()
    score = chat.score(result.text)
    took = time.perf_counter() - t0
    same_ids = [t.id for t in score.tokens] == [p.id for p in probs]
    gap = max((abs(t.logprob - p.logprob) for t, p in zip(score.tokens, probs, strict=False)), default=0.0)
    return {
        "answer_tokens": len(probs),
        "decode_tps": round(result.stats.decode_tps, 2),
        "score_tps": round(len(score.tokens) / took, 2),
        "score_s": round(took, 3),
        "same_token_ids": same_ids,
        "max_token_gap": gap,
        "total_gap": abs(score.total - math.fsum(p.logprob for p in probs)),
    }


def engines(args):
    from qwenchat.engines.transformers.engine import TransformersEngine
    from qwenchat.models.loader import LoadOptions, load, resolve

    lm = load(resolve("demo", demo=True), LoadOptions(cpu_only=True))
    yield "transformers", TransformersEngine(lm.model, lm.tokenizer, lm.name)
    try:
        from qwenchat.engines.llamacpp.engine import LlamaCppEngine
        from qwenchat.models.demo import ensure_gguf

        yield "llama.cpp", LlamaCppEngine(ensure_gguf(), n_ctx=2048, n_threads=args.threads)
    except Exception as exc:  # no extra, no GGUF: the transformers figures stand alone
        print(json.dumps({"llama.cpp": f"skipped: {exc}"}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--threads", type=int, default=None, help="llama.cpp threads (default: physical cores)")
    args = ap.parse_args()
    summary = {}
    for name, engine in engines(args):
        rows = []
        for r in range(args.rounds):
            row = {"engine": name, "round": r + 1, **one_round(engine, args.new_tokens)}
            print(json.dumps(row), flush=True)
            rows.append(row)
        summary[name] = {
            "decode_tps": statistics.median(x["decode_tps"] for x in rows),
            "score_tps": statistics.median(x["score_tps"] for x in rows),
            "score_vs_decode": round(
                statistics.median(x["score_tps"] / x["decode_tps"] for x in rows if x["decode_tps"]), 3
            ),
            "max_token_gap": max(x["max_token_gap"] for x in rows),
            "same_token_ids": all(x["same_token_ids"] for x in rows),
        }
    print(json.dumps({"summary": summary}))


if __name__ == "__main__":
    main()
