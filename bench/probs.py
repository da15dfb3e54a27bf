"""Token probabilities: what recording them costs, and what `:branch` saves over a `:retry`.

One process, one loaded model; contestants interleaved round by round so machine noise hits them alike:

* decode tok/s of plain `model.generate`, of qwenchat's transformers engine with probabilities off and with
  them on (k = 5); targets: off ≥ 0.97x and on ≥ 0.85x plain generate. With llama-cpp-python and the demo
  GGUF, the llama.cpp engine off vs on as well.
* on a ~500-token answer: the time from `:branch N 2` to its first new token vs a full `:retry` (its first
  token, and the time it takes to come back to token N, where the branch starts generating).

Prints one JSON line per measurement, then a JSON summary.

    python bench/probs.py                    # the demo model
    python bench/probs.py --new-tokens 64 --rounds 3 --long 500
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from transformers.generation.streamers import BaseStreamer  # noqa: E402

from qwenchat.chat.observer import Headless  # noqa: E402
from qwenchat.chat.session import ChatSession  # noqa: E402
from qwenchat.engines.api import GenerationRequest  # noqa: E402
from qwenchat.engines.transformers.engine import TransformersEngine  # noqa: E402
from qwenchat.models.loader import LoadOptions, load, resolve  # noqa: E402
from qwenchat.probs.branch import plan_branch  # noqa: E402

PROMPT = [
    {"role": "user", "content": "Write a Python function that checks whether a string is a palindrome."}
]
LONG = "Explain in detail, step by step, how a hash map works, with an implementation in Python."


class _Clock(BaseStreamer):
    def __init__(self) -> None:
        self.first = self.last = None
        self.n = -1  # the first put is the prompt

    def put(self, value):
        self.n += 1
        if self.n:
            now = time.perf_counter()
            self.first = self.first or now
            self.last = now

    def end(self):
        pass


def plain_tps(model, tok, n: int) -> float:
    ids = tok.apply_chat_template(PROMPT, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    clock = _Clock()
    model.generate(
        **ids,
        streamer=clock,
        do_sample=False,
        max_new_tokens=n,
        min_new_tokens=n,
        pad_token_id=tok.eos_token_id,
    )
    return (clock.n - 1) / (clock.last - clock.first)


def engine_tps(engine, n: int, k: int) -> float:
    engine.reset()  # every contestant prefills the same prompt from scratch
    settings = {"do_sample": False, "max_new_tokens": n, "min_new_tokens": n}
    if "llama" in type(engine).__name__.lower():
        settings.pop("min_new_tokens")
    req = GenerationRequest(list(PROMPT), settings, probs_k=k)
    chunks = list(engine.stream(req, threading.Event()))
    if chunks[-1].error:
        raise SystemExit(chunks[-1].error)
    if k and not any(c.probs for c in chunks):
        raise SystemExit("probabilities were asked for and none came")
    return chunks[-1].stats.decode_tps


class FirstToken(Headless):
    """An observer that notes when the first new text of an answer arrives."""

    def __init__(self) -> None:
        super().__init__()
        self.first: float | None = None
        self.skip: str | None = None  # a :branch shows its kept part first: that is not new text

    def answer(self, *, think_open, continues):
        observer = self

        class Sink:
            def feed(self, text: str) -> None:
                if observer.skip and text == observer.skip:
                    observer.skip = None
                    return
                if text and observer.first is None:
                    observer.first = time.perf_counter()

            def end(self, *a, **k) -> None:
                pass

        return Sink()


def branch_vs_retry(engine, long: int, at: list[int]) -> list[dict]:
    obs = FirstToken()
    chat = ChatSession(engine, observer=obs)
    chat.settings.update({"do_sample": False, "max_new_tokens": long, "min_new_tokens": long})
    chat.probs_k = 5
    chat.send(LONG)
    base = chat.conversation.messages[-1]
    # a full :retry: its first token, its end, and when it reaches each branch point
    t0 = time.perf_counter()
    obs.first = None
    result = chat.retry()
    t_end = time.perf_counter()
    st = result.stats
    per_token = (t_end - obs.first) / max(st.generated_tokens - 1, 1)
    rows = []
    for n in at:
        chat.conversation.messages[-1] = base
        chat.settings.update({"max_new_tokens": 16, "min_new_tokens": 1})
        obs.first = None
        t1 = time.perf_counter()
        plan = plan_branch(engine, base.probs, str(n), "2")
        obs.skip = plan.shown
        chat.branch(plan)
        first = obs.first - t1
        chat.settings.update({"max_new_tokens": long, "min_new_tokens": long})
        rows.append(
            {
                "measure": "branch_vs_retry",
                "answer_tokens": len(base.probs),
                "branch_at": n,
                "branch_first_new_token_s": round(first, 3),
                "retry_first_token_s": round(st.ttft_s, 3),
                "retry_reaches_token_s": round(st.ttft_s + per_token * (n - 1), 3),
                "retry_total_s": round(t_end - t0, 3),
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("-c", "--checkpoint", default="demo")
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--long", type=int, default=500, help="tokens of the answer :branch and :retry redo")
    ap.add_argument("--llamacpp", choices=["auto", "off"], default="auto")
    args = ap.parse_args()

    loaded = load(resolve(args.checkpoint, demo=args.checkpoint == "demo"), LoadOptions())
    model, tok = loaded.model, loaded.tokenizer
    torch.set_grad_enabled(False)
    engine = TransformersEngine(model, tok, loaded.name)
    llama = None
    if args.llamacpp == "auto" and args.checkpoint == "demo":
        try:
            from qwenchat.engines.llamacpp.engine import LlamaCppEngine
            from qwenchat.models.demo import ensure_gguf

            llama = LlamaCppEngine(ensure_gguf(), n_ctx=4096, n_threads=torch.get_num_threads())
        except ImportError:
            print("llama.cpp skipped: llama-cpp-python is not installed", file=sys.stderr)

    n = args.new_tokens
    plain_tps(model, tok, 8)  # warm-up
    engine_tps(engine, 8, 0)
    tps: dict[str, list[float]] = {"plain_generate": [], "probs_off": [], "probs_on": []}
    if llama is not None:
        engine_tps(llama, 8, 0)
        tps.update({"llamacpp_probs_off": [], "llamacpp_probs_on": []})
    for r in range(args.rounds):
        row = {
            "plain_generate": plain_tps(model, tok, n),
            "probs_off": engine_tps(engine, n, 0),
            "probs_on": engine_tps(engine, n, 5),
        }
        if llama is not None:
            row["llamacpp_probs_off"] = engine_tps(llama, n, 0)
            row["llamacpp_probs_on"] = engine_tps(llama, n, 5)
        for key, value in row.items():
            tps[key].append(value)
        print(
            json.dumps({"measure": "decode_tps", "round": r + 1, **{k: round(v, 2) for k, v in row.items()}})
        )

    med = {k: statistics.median(v) for k, v in tps.items()}
    branch = branch_vs_retry(engine, args.long, [args.long // 2, args.long * 4 // 5])
    summary = {
        "summary": True,
        "model": loaded.name,
        "threads": torch.get_num_threads(),
        "new_tokens": n,
        "rounds": args.rounds,
        "decode_tps_median": {k: round(v, 2) for k, v in med.items()},
        "off_vs_plain": round(med["probs_off"] / med["plain_generate"], 3),
        "on_vs_plain": round(med["probs_on"] / med["plain_generate"], 3),
        "targets": {"off_vs_plain": 0.97, "on_vs_plain": 0.85},
        "branch_vs_retry": branch,
    }
    if llama is not None:
        summary["llamacpp_on_vs_off"] = round(med["llamacpp_probs_on"] / med["llamacpp_probs_off"], 3)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
