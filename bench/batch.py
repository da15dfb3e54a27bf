"""Batch throughput: answers per minute of `qwenchat --batch` on the demo model, against a baseline of the
same answers from a bare loop of headless ChatSession.send() (no records, no fsync, no progress), measured in
the same process on the same loaded model, interleaved prompt by prompt so machine noise hits both alike.
The difference is what the batch machinery costs (planning, one fsynced JSON line per run, the bar).

    python bench/batch.py                          # the demo model, transformers engine
    python bench/batch.py --engine llama.cpp       # the demo GGUF through llama.cpp
    python bench/batch.py --prompts 8 --seeds 2 --new-tokens 32

Prints one JSON object.
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from qwenchat.batch.inputs import parse_text  # noqa: E402
from qwenchat.batch.plan import plan_runs  # noqa: E402
from qwenchat.batch.records import ResultsFile  # noqa: E402
from qwenchat.batch.runner import BatchContext, run_batch  # noqa: E402
from qwenchat.chat.session import ChatSession  # noqa: E402
from qwenchat.compare.variants import Variant  # noqa: E402
from qwenchat.conversation.model import DEFAULT_SYSTEM, Conversation  # noqa: E402
from qwenchat.settings import Settings  # noqa: E402

PROMPTS = [
    "Write a Python function that reverses a string.",
    "What is a closure in JavaScript?",
    "Explain big-O notation in two sentences.",
    "Write a SQL query that counts rows per day.",
    "What does git rebase do?",
    "Write a bash loop over the files of a folder.",
    "How do I read a JSON file in Python?",
    "What is the difference between a list and a tuple?",
    "Write a regular expression for an email address.",
    "Explain what a mutex is.",
    "How do I sort a dict by value in Python?",
    "What is tail recursion?",
]


def make_engine(args):
    from qwenchat.models import demo

    if args.engine == "llama.cpp":
        from qwenchat.engines.llamacpp.engine import LlamaCppEngine

        return LlamaCppEngine(
            str(demo.ensure_gguf()), n_ctx=4096, name=demo.DEMO_GGUF_NAME
        ), "cpu (llama.cpp)"
    from qwenchat.engines.transformers.engine import TransformersEngine
    from qwenchat.models.loader import LoadOptions, load, resolve

    loaded = load(resolve("demo", demo=True), LoadOptions(cpu_only=args.cpu_only))
    return TransformersEngine(loaded.model, loaded.tokenizer, loaded.name), f"{loaded.device} {loaded.dtype}"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--engine", choices=("transformers", "llama.cpp"), default="transformers")
    ap.add_argument("--prompts", type=int, default=6)
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--new-tokens", type=int, default=32)
    ap.add_argument("--cpu-only", action="store_true")
    args = ap.parse_args()

    t_load = time.perf_counter()
    engine, device = make_engine(args)
    load_s = time.perf_counter() - t_load
    schema = engine.settings_schema()
    settings = Settings(engine.default_settings(), schema=schema)
    settings.update({"max_new_tokens": args.new_tokens, "temperature": 0})
    prompts = parse_text("\n".join(PROMPTS[: args.prompts]))
    runs = plan_runs(
        prompts,
        None,
        [Variant("")],
        list(range(1, args.seeds + 1)),
        default_system=DEFAULT_SYSTEM,
        base_settings=settings.effective(),
        schema=schema,
    )
    ctx = BatchContext(engine, settings, model=engine.name, engine_name=args.engine)
    ChatSession(engine, settings=copy.deepcopy(settings)).send("Warm up.")  # first-call costs out of both

    batch_s = base_s = 0.0
    tokens = 0
    same = True
    with tempfile.TemporaryDirectory() as tmp, ResultsFile(Path(tmp) / "r.jsonl") as results:
        for run in runs:  # interleaved: one run through the batch runner, the same one bare
            t0 = time.perf_counter()
            run_batch(ctx, [run], results)
            batch_s += time.perf_counter() - t0
            record = results.done[run.key]
            s = copy.deepcopy(settings)
            s.seed = run.seed
            t0 = time.perf_counter()
            bare = ChatSession(engine, conversation=Conversation(system=run.system), settings=s).send(
                run.messages[-1]["content"]
            )
            base_s += time.perf_counter() - t0
            tokens += record["tokens"]["generated"] or 0
            same = same and bare.text == record["answer"]
            print(f"{run.id}: batch {batch_s:.1f} s, bare {base_s:.1f} s so far", file=sys.stderr, flush=True)
    n = len(runs)
    print(
        json.dumps(
            {
                "bench": "batch",
                "engine": args.engine,
                "model": engine.name,
                "device": device,
                "torch_threads": torch.get_num_threads(),
                "cpu": platform.processor() or platform.machine(),
                "runs": n,
                "max_new_tokens": args.new_tokens,
                "generated_tokens": tokens,
                "load_s": round(load_s, 1),
                "batch_answers_per_min": round(60 * n / batch_s, 1),
                "baseline_answers_per_min": round(60 * n / base_s, 1),
                "batch_overhead_pct": round(100 * (batch_s - base_s) / base_s, 1),
                "batch_tokens_per_s": round(tokens / batch_s, 1),
                "same_answers_as_baseline": same,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
