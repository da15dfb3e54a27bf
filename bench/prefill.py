"""Long-prompt prefill: chunked (qwenchat's schedule) vs one-shot, on the transformers engine.

Each contestant runs in a subprocess of its own: it loads the model, prefills a ~4k-token prompt (timed:
prefill tok/s from the time to the first token), then a ~7k-token prompt (its peak RSS, counted from the RSS
it started from: /proc/self/clear_refs resets the peak), and the chunked one also times Ctrl-C during a
7k-token prefill: the seconds from the cancel to the end of the stream. Prints one JSON line per contestant
and a JSON summary (ratios against the same run's one-shot baseline).

    python bench/prefill.py                  # the demo model
    python bench/prefill.py -c DIR --chunk 256
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

LINE = "2026-12-01 19:{m:02d}:{s:02d} INFO worker-{w} processed batch {b} in {t} ms (queue depth {q})"


def _status_mib(key: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024  # kB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def reset_peak_rss() -> None:
    """Start the peak (VmHWM) again from the current RSS, so that the model load's own peak is not counted."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def long_prompt(engine, tokens: int) -> list[dict[str, str]]:
    """A pasted log of about `tokens` prompt tokens: the long prompt a kept cache has to reuse."""
    from qwenchat.engines.api import GenerationRequest

    lines: list[str] = []
    i = 0
    while True:
        msgs = [{"role": "user", "content": "Summarise this log:\n" + "\n".join(lines)}]
        n = engine.count_tokens(GenerationRequest(msgs))
        if n >= tokens:
            return msgs
        step = max(1, (tokens - n) // 40)
        for _ in range(step):
            lines.append(
                LINE.format(m=i // 60 % 60, s=i % 60, w=i % 7, b=i * 13 % 1000, t=i * 7 % 300, q=i % 9)
            )
            i += 1


def child(args: argparse.Namespace) -> None:
    import torch

    from qwenchat.engines.api import GenerationRequest
    from qwenchat.engines.transformers.engine import TransformersEngine
    from qwenchat.models.loader import LoadOptions, load, resolve

    torch.set_num_threads(args.threads)
    loaded = load(resolve(args.model, demo=args.model == "demo"), LoadOptions(cpu_only=True))
    engine = TransformersEngine(loaded.model, loaded.tokenizer, loaded.name, reuse_cache=False)
    engine.prefill_chunk = args.chunk if args.mode == "chunked" else 10**9
    settings = {"do_sample": False, "max_new_tokens": 1}
    out: dict = {"mode": args.mode, "chunk": args.chunk if args.mode == "chunked" else None}
    out["rss_after_load_mib"] = round(_status_mib("VmRSS"), 1)

    def turn(msgs, cancel=None):
        return list(engine.stream(GenerationRequest(msgs, settings), cancel or threading.Event()))[-1].stats

    short, long = long_prompt(engine, args.tokens), long_prompt(engine, args.long_tokens)
    st = turn(short)
    out.update(
        prompt_tokens=st.prompt_tokens, prefill_s=round(st.ttft_s, 3), prefill_tps=round(st.prefill_tps, 1)
    )
    out["rss_before_long_mib"] = round(_status_mib("VmRSS"), 1)
    reset_peak_rss()
    st = turn(long)
    out.update(long_prompt_tokens=st.prompt_tokens, long_prefill_s=round(st.ttft_s, 3))
    out["peak_rss_mib"] = round(_status_mib("VmHWM"), 1)
    if args.mode == "chunked":
        cancel = threading.Event()
        timer = threading.Timer(args.cancel_after, cancel.set)
        timer.start()
        t0 = time.perf_counter()
        final = turn(long, cancel)
        t_end = time.perf_counter()
        out["cancel_finish"] = final.finish_reason
        out["cancel_to_return_s"] = round(t_end - t0 - args.cancel_after, 3)
    print(json.dumps(out), flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-c", "--model", default="demo", help="model directory (default: the demo model)")
    p.add_argument("--tokens", type=int, default=4096, help="the timed prompt's length")
    p.add_argument("--long-tokens", type=int, default=7000, help="the RSS and cancel prompt's length")
    p.add_argument("--chunk", type=int, default=None, help="chunk size (default: the engine's)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--cancel-after", type=float, default=5.0, help="seconds into the prefill")
    p.add_argument("--mode", choices=["chunked", "oneshot"], help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.chunk is None:
        from qwenchat.engines.transformers.engine import PREFILL_CHUNK

        args.chunk = PREFILL_CHUNK
    if args.mode:
        return child(args)
    rows = {}
    for mode in ("oneshot", "chunked"):
        cmd = [sys.executable, __file__, "--mode", mode, "-c", args.model, "--tokens", str(args.tokens)]
        cmd += ["--long-tokens", str(args.long_tokens), "--chunk", str(args.chunk)]
        cmd += ["--threads", str(args.threads), "--cancel-after", str(args.cancel_after)]
        res = subprocess.run(cmd, capture_output=True, text=True, check=True)
        rows[mode] = json.loads(res.stdout.strip().splitlines()[-1])
        print(json.dumps(rows[mode]), flush=True)
    one, ch = rows["oneshot"], rows["chunked"]
    summary = {
        "summary": True,
        "chunk": args.chunk,
        "prompt_tokens": ch["prompt_tokens"],
        "chunked_prefill_tps": ch["prefill_tps"],
        "oneshot_prefill_tps": one["prefill_tps"],
        "chunked_over_oneshot_tps": round(ch["prefill_tps"] / one["prefill_tps"], 3),
        "long_prompt_tokens": ch["long_prompt_tokens"],
        "cancel_to_return_s": ch["cancel_to_return_s"],
        "chunked_peak_rss_mib": ch["peak_rss_mib"],
        "oneshot_peak_rss_mib": one["peak_rss_mib"],
        # what the long prefill added to the RSS it started from
        "chunked_peak_growth_mib": round(ch["peak_rss_mib"] - ch["rss_before_long_mib"], 1),
        "oneshot_peak_growth_mib": round(one["peak_rss_mib"] - one["rss_before_long_mib"], 1),
    }
    print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
