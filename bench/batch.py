"""Batch throughput: answers per minute of `qwenchat --batch` on the demo model, against a baseline of the
same answers from a bare loop of headless ChatSession.send() (no records, no fsync, no progress), measured in
the same process on the same loaded model, interleaved prompt by prompt so machine noise hits both alike.
The difference is what the batch machinery costs (planning, one fsynced JSON line per run, the bar).

    python bench/batch.py                          # the demo model, transformers engine
    python bench/batch.py --engine llama.cpp       # the demo GGUF through llama.cpp
    python bench/batch.py --prompts 8 --seeds 2 --new-tokens 32
    python bench/batch.py --server                 # --parallel 1 against 8 on llama-cpp-python's server

`--server` measures `--parallel`: answers per minute of the same runs sent one at a time and eight at a time
to `python -m llama_cpp.server` on the demo GGUF (the real server the tests start, tests/support), in rounds
1, 8, 8, 1 in one process so that machine noise hits both alike, each round into a fresh results file.

Prints one JSON object.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

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


def _rounds(url: str, args, tmp: str) -> dict:
    """Answers per minute of the same runs at --parallel 1 and N against the server at `url`, in rounds
    1, N, N, 1, each into a fresh results file; and whether every round gave the same answers."""
    from qwenchat.batch.parallel import contexts, run_parallel
    from qwenchat.engines.openai.engine import OpenAIEngine

    parallel = args.parallel
    engines = [OpenAIEngine(url, model="demo") for _ in range(parallel)]
    try:
        for e in engines:
            e.connect()
        schema = engines[0].settings_schema()
        settings = Settings({}, schema=schema)
        settings.update({"max_new_tokens": args.new_tokens, "temperature": 0})
        runs = plan_runs(
            parse_text("\n".join(PROMPTS[: args.prompts])),
            None,
            [Variant("")],
            list(range(1, args.seeds + 1)),
            default_system=DEFAULT_SYSTEM,
            base_settings=settings.effective(),
            schema=schema,
        )
        ctx = BatchContext(engines[0], settings, model="demo", engine_name=f"openai:{url}")
        ChatSession(engines[0], settings=copy.deepcopy(settings)).send("Warm up.")
        seconds = {1: 0.0, parallel: 0.0}
        answers = []
        for n, width in enumerate((1, parallel, parallel, 1)):
            with ResultsFile(Path(tmp) / f"r{n}.jsonl") as results:
                t0 = time.perf_counter()
                if width == 1:
                    summary = run_batch(ctx, runs, results)
                else:
                    summary = run_parallel(contexts(ctx, engines[:width]), runs, results)
                seconds[width] += time.perf_counter() - t0
                assert summary.written == len(runs), summary.failed
                answers.append([results.done[r.key]["answer"] for r in runs])
            print(f"round {n + 1}: --parallel {width}: {seconds[width]:.1f} s so far", file=sys.stderr)
            Path(tmp, f"r{n}.jsonl").unlink()
    finally:
        for e in engines:
            e.close()
    n = 2 * len(runs)  # each width ran every run twice
    one, many = 60 * n / seconds[1], 60 * n / seconds[parallel]
    return {
        "runs_per_round": len(runs),
        "answers_per_min_parallel_1": round(one, 1),
        f"answers_per_min_parallel_{parallel}": round(many, 1),
        "speedup": round(many / one, 2),
        "same_answers": all(a == answers[0] for a in answers),
    }


def server_mode(args) -> None:
    """--parallel 1 against --parallel N on llama-cpp-python's server, then on a scripted server whose every
    answer takes a fixed time however many are in flight (what a batching server does under light load):
    the first is what this machine's real server gives, the second what the client itself can overlap."""
    from qwenchat.models import demo
    from tests.support.cli_harness import ChatServer, text_reply
    from tests.support.real_server import RealServer

    with tempfile.TemporaryDirectory() as tmp:
        # By default the server cuts the answer it is streaming short when another request comes in.
        keep = ("--interrupt_requests", "False")
        server = RealServer(str(demo.ensure_gguf()), str(Path(tmp) / "server.log"), extra_args=keep)
        try:
            real = _rounds(server.url, args, tmp)
        finally:
            server.stop()
        words = " ".join(["word"] * args.new_tokens)
        # One chunk per token, 20 ms apart: an answer takes as long as 32 tokens at 50 tok/s.
        with ChatServer(then=text_reply(words, chunks=args.new_tokens, step=0.02), models=["demo"]) as fixed:
            scripted = _rounds(fixed.url, args, tmp)
    print(
        json.dumps(
            {
                "bench": "batch --parallel",
                "cpu": platform.processor() or platform.machine(),
                "cores": os.cpu_count(),
                "parallel": args.parallel,
                "rounds": "1, N, N, 1 (same runs, same process)",
                "max_new_tokens": args.new_tokens,
                "llama_cpp_server": {
                    "server": "llama_cpp.server, demo GGUF, --n_threads 1 --interrupt_requests False",
                    **real,
                },
                "scripted_server_fixed_latency": {
                    "server": f"scripted (tests/support), {args.new_tokens} chunks 20 ms apart an answer",
                    **scripted,
                },
            },
            indent=2,
        )
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--engine", choices=("transformers", "llama.cpp"), default="transformers")
    ap.add_argument("--prompts", type=int, default=6)
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--new-tokens", type=int, default=32)
    ap.add_argument("--cpu-only", action="store_true")
    ap.add_argument("--server", action="store_true", help="--parallel 1 against N on llama-cpp's server")
    ap.add_argument("--parallel", type=int, default=8, help="N for --server")
    args = ap.parse_args()
    if args.server:
        return server_mode(args)
    import torch

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
