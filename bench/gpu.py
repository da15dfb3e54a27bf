"""The GPU figures, as one command on a GPU box: load time, TTFT for a 2k-token prompt, decode tok/s of
qwenchat's transformers engine eager (DynamicCache: what runs without a flag) vs `--compile` (the engine's
static KV cache and compiled decode step, engines/transformers_compile.py), and peak GPU memory. Prints one
JSON object.

    python bench/gpu.py -c Qwen/Qwen2-7B-Instruct            # targets: compiled decode >= 200 tok/s,
                                                             # TTFT <= 80 ms (2k prompt), load <= 10 s
    python bench/gpu.py -c demo --new-tokens 16 --prompt-tokens 200   # a CPU smoke run (inductor: minutes)

The compiled engine's first turn compiles (its time is `compile_turn_s`); the second, the same prompt and
length, is the one timed. On CUDA, transformers' own static-cache path (`cache_implementation="static"`,
which compiles the decode step by itself there) runs last as a reference (`hf_static`; `--skip-static` skips
it).
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

from qwenchat.engines.api import GenerationRequest  # noqa: E402
from qwenchat.engines.transformers.compile import enable  # noqa: E402
from qwenchat.engines.transformers.engine import TransformersEngine  # noqa: E402
from qwenchat.models.loader import LoadOptions, load, resolve  # noqa: E402

FILLER = "The quick brown fox jumps over the lazy dog while the compiler counts its graphs. "


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def prompt_of(tokenizer, n_tokens: int) -> list[dict]:
    per = len(tokenizer(FILLER, add_special_tokens=False)["input_ids"])
    text = FILLER * max(1, n_tokens // per)
    return [{"role": "user", "content": text + "\nSummarise the text above in one sentence."}]


def engine_turn(engine, messages, settings) -> dict:
    sync()
    t0 = time.perf_counter()
    chunks = list(engine.stream(GenerationRequest(messages, settings), threading.Event()))
    sync()
    st = chunks[-1].stats
    if chunks[-1].error:
        raise SystemExit(chunks[-1].error)
    return {
        "ttft_s": round(st.ttft_s, 4),
        "decode_tps": round(st.decode_tps, 2),
        "tokens": st.generated_tokens,
        "total_s": round(time.perf_counter() - t0, 2),
        "text": "".join(c.text for c in chunks),
    }


def static_decode(model, tokenizer, messages, new_tokens: int) -> dict:
    """Decode tok/s of generate with a static cache (compiled decode step on CUDA); the first call warms up
    (and compiles), the second is timed."""
    ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt")
    ids = ids["input_ids"] if hasattr(ids, "keys") else ids
    ids = ids.to(model.device)
    kwargs = dict(
        max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False, cache_implementation="static"
    )
    out = {}
    for label in ("warmup", "timed"):
        sync()
        t0 = time.perf_counter()
        model.generate(ids, max_new_tokens=1, do_sample=False, cache_implementation="static")
        sync()
        t1 = time.perf_counter()
        model.generate(ids, **kwargs)
        sync()
        t2 = time.perf_counter()
        first, total = t1 - t0, t2 - t1
        # the full run minus a one-token run: decode time of new_tokens - 1 tokens
        out[label] = round((new_tokens - 1) / max(total - first, 1e-9), 2)
    return {"decode_tps": out["timed"], "warmup_decode_tps": out["warmup"]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("-c", "--checkpoint", default="Qwen/Qwen2-7B-Instruct")
    ap.add_argument("--dtype", default="bfloat16")
    ap.add_argument("--prompt-tokens", type=int, default=2048)
    ap.add_argument("--new-tokens", type=int, default=256)
    ap.add_argument("--skip-static", action="store_true", help="no transformers static-cache reference")
    ap.add_argument("--rounds", type=int, default=3, help="eager and compiled turns, interleaved (median)")
    ap.add_argument("--backend", default="inductor", help="torch.compile backend (eager: a quick check)")
    args = ap.parse_args()
    cuda = torch.cuda.is_available()
    t0 = time.perf_counter()
    loaded = load(resolve(args.checkpoint, demo=args.checkpoint == "demo"), LoadOptions(dtype=args.dtype))
    sync()
    load_s = time.perf_counter() - t0
    engine = TransformersEngine(loaded.model, loaded.tokenizer, loaded.name, reuse_cache=False)
    settings = {"do_sample": False, "max_new_tokens": args.new_tokens, "min_new_tokens": args.new_tokens}
    long_prompt = prompt_of(loaded.tokenizer, args.prompt_tokens)
    short = [{"role": "user", "content": "Write a Python function that merges two sorted lists."}]
    engine_turn(engine, short, {**settings, "max_new_tokens": 8, "min_new_tokens": 1})  # warm up kernels
    # one token: it comes from the eager prefill (no decode step compiles for the long prompt's cache size)
    one = {**settings, "max_new_tokens": 1, "min_new_tokens": 1}
    engine_turn(engine, long_prompt, one)  # the first long prefill warms its kernels (cold on a CPU: seconds)
    ttft = statistics.median(engine_turn(engine, long_prompt, one)["ttft_s"] for _ in range(args.rounds))
    compiled_engine = TransformersEngine(loaded.model, loaded.tokenizer, loaded.name, reuse_cache=False)
    enable(compiled_engine, backend=args.backend)
    first = engine_turn(compiled_engine, short, settings)  # compiles the decode step for this cache size
    rounds = [(engine_turn(engine, short, settings), engine_turn(compiled_engine, short, settings))]
    rounds += [
        (engine_turn(engine, short, settings), engine_turn(compiled_engine, short, settings))
        for _ in range(args.rounds - 1)
    ]
    eager = {**rounds[0][0], "decode_tps": statistics.median(e["decode_tps"] for e, _ in rounds)}
    compiled = {**rounds[0][1], "decode_tps": statistics.median(c["decode_tps"] for _, c in rounds)}
    compiled_ttft = statistics.median(
        engine_turn(compiled_engine, long_prompt, one)["ttft_s"] for _ in range(args.rounds)
    )
    result = {
        "device": torch.cuda.get_device_name(0) if cuda else "cpu",
        "model": loaded.name,
        "dtype": str(loaded.dtype),
        "load_s": round(load_s, 2),
        "ttft_2k_s": ttft,
        "prompt_tokens": engine.count_tokens(GenerationRequest(long_prompt)),
        "eager_decode_tps": eager["decode_tps"],
        "compile_decode_tps": compiled["decode_tps"],
        "compile_speedup": round(compiled["decode_tps"] / max(eager["decode_tps"], 1e-9), 2),
        "compile_turn_s": first["total_s"],  # the first --compile turn, compile included
        "compile_ttft_2k_s": compiled_ttft,
        "compile_backend": args.backend,
        "same_greedy_text_as_eager": compiled["text"] == eager["text"],
        "new_tokens": compiled["tokens"],
        "rounds": len(rounds),
    }
    if cuda and not args.skip_static:  # transformers compiles its static-cache path on CUDA only
        result["hf_static"] = static_decode(loaded.model, loaded.tokenizer, short, args.new_tokens)
    if cuda:
        result["peak_gpu_mem_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    result["targets"] = {"compiled_decode_tps": 200, "ttft_2k_s": 0.08, "load_s": 10}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
