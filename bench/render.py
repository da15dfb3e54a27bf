"""How much the streaming renderer costs per token, and whether that grows with the answer.

Feeds bench/fixtures/long_answer.md (~4,000 tokens: a think block, prose, nested lists, tables, code fences in
several languages, one of ~120 lines) one token at a time into a 100x40 terminal console writing to memory:

* `fast`: as fast as the renderer takes it, real clock, the normal 12.5 Hz throttle (so few redraws happen);
* `paced`: a virtual clock that advances 1/decode_tps per token, so the throttle redraws exactly as often as
  it would while the model decodes; the time measured is still the renderer's real CPU time. This is the
  honest number for "share of decode time". Run at the measured decode speed and at 20 tok/s.

The baseline is what `transformers chat` does: re-render the whole answer with rich's Markdown on every
token (first `--naive-tokens` tokens only: it is quadratic). Decode speed comes from the demo model (bf16,
greedy, 128 tokens after a warm-up) unless `--decode-tps` is given. Prints one JSON object.

    python bench/render.py [--decode-tps 20] [--naive-tokens 1000]
"""

from __future__ import annotations

import argparse
import io
import json
import re
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.markdown import Markdown

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from qwenchat.ui.render import Renderer  # noqa: E402

FIXTURE = Path(__file__).parent / "fixtures" / "long_answer.md"
WIDTH, HEIGHT = 100, 40
REFERENCE_TPS = 20.0  # the brief's "~20 tok/s": renderer share of decode time is also given at this speed
_FALLBACK = re.compile(r"\s+|\w+|[^\w\s]")


def tokenize(text: str) -> tuple[list[str], str]:
    """Chunks as the model would stream them: the demo tokenizer's pieces, else a regex split."""
    try:
        from transformers import AutoTokenizer

        from qwenchat.models.demo import ensure_demo

        tok = AutoTokenizer.from_pretrained(ensure_demo())
        enc = tok(text, return_offsets_mapping=True, add_special_tokens=False)
        starts = sorted({s for s, _ in enc["offset_mapping"]} | {0})
        bounds = [*starts, len(text)]
        pieces = [text[a:b] for a, b in zip(bounds, bounds[1:], strict=False) if b > a]
        assert "".join(pieces) == text
        return pieces, "demo tokenizer (offsets)"
    except Exception as exc:  # no demo model on this machine
        return _FALLBACK.findall(text), f"regex \\s+|\\w+|[^\\w\\s] ({type(exc).__name__}: {exc})"[:200]


def measure_decode_tps(new_tokens: int = 128) -> float:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from qwenchat.models.demo import ensure_demo

    path = ensure_demo()
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.bfloat16)
    model.eval()
    ids = tok.apply_chat_template(
        [{"role": "user", "content": "Explain write-ahead logs."}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )
    kw: dict[str, Any] = dict(do_sample=False, pad_token_id=tok.eos_token_id)
    with torch.inference_mode():
        model.generate(**ids, max_new_tokens=8, min_new_tokens=8, **kw)  # warm-up
        t0 = time.perf_counter()
        model.generate(**ids, max_new_tokens=new_tokens, min_new_tokens=new_tokens, **kw)
        dt = time.perf_counter() - t0
    return new_tokens / dt


def console() -> Console:
    return Console(
        file=io.StringIO(), force_terminal=True, width=WIDTH, height=HEIGHT, color_system="truecolor"
    )


def run_renderer(tokens: list[str], tick: float | None) -> dict[str, Any]:
    """Per-token feed times; `tick` = virtual seconds per token (paced), None = real clock (fast)."""
    now = [0.0]

    def virtual() -> float:
        return now[0]

    r = Renderer(console(), clock=virtual if tick is not None else time.monotonic)
    times: list[float] = []
    perf = time.perf_counter
    t_all = perf()
    view = r.answer("demo")
    for piece in tokens:
        if tick is not None:
            now[0] += tick
        t0 = perf()
        view.feed(piece)
        times.append(perf() - t0)
    t0 = perf()
    view.end("stop")
    end_s = perf() - t0
    total = perf() - t_all
    first, last = times[:500], times[-500:]
    return {
        "tokens": len(tokens),
        "total_s": round(total, 4),
        "end_s": round(end_s, 4),
        "mean_ms_per_token": round(1e3 * total / len(tokens), 4),
        "first500_mean_ms": round(1e3 * statistics.fmean(first), 4),
        "last500_mean_ms": round(1e3 * statistics.fmean(last), 4),
        "ratio_last_first": round(statistics.fmean(last) / statistics.fmean(first), 3),
        "p99_ms": round(1e3 * sorted(times)[int(0.99 * len(times))], 3),
        "max_ms": round(1e3 * max(times), 3),
        "block_parses": view._blocks.parses,
        "output_bytes": len(r.console.file.getvalue()),
    }


def run_naive(tokens: list[str]) -> dict[str, Any]:
    """Re-render the whole answer with Markdown on every token (transformers chat's approach)."""
    c = console()
    times: list[float] = []
    text = ""
    perf = time.perf_counter
    t_all = perf()
    with Live(console=c, auto_refresh=False, vertical_overflow="visible") as live:
        for piece in tokens:
            t0 = perf()
            text += piece
            live.update(Markdown(text, code_theme="monokai"), refresh=True)
            times.append(perf() - t0)
    total = perf() - t_all
    k = max(1, len(times) // 10)
    return {
        "tokens": len(tokens),
        "total_s": round(total, 3),
        "mean_ms_per_token": round(1e3 * total / len(tokens), 3),
        f"first{k}_mean_ms": round(1e3 * statistics.fmean(times[:k]), 3),
        f"last{k}_mean_ms": round(1e3 * statistics.fmean(times[-k:]), 3),
        "ratio_last_first": round(statistics.fmean(times[-k:]) / statistics.fmean(times[:k]), 2),
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--decode-tps", type=float, help="skip measuring the demo model; use this decode speed")
    ap.add_argument("--naive-tokens", type=int, default=1000)
    ap.add_argument("--fixture", type=Path, default=FIXTURE)
    args = ap.parse_args(argv)

    text = args.fixture.read_text(encoding="utf-8")
    tokens, how = tokenize(text)
    if args.decode_tps:
        tps, tps_source = args.decode_tps, "--decode-tps"
    else:
        tps, tps_source = measure_decode_tps(), "demo model, bf16, greedy, 128 new tokens after warm-up"
    decode_s = len(tokens) / tps

    fast = run_renderer(tokens, None)
    paced = run_renderer(tokens, 1.0 / tps)
    paced20 = run_renderer(tokens, 1.0 / REFERENCE_TPS)
    naive = run_naive(tokens[: args.naive_tokens])
    ours_same = run_renderer(tokens[: args.naive_tokens], 1.0 / tps)
    decode20_s = len(tokens) / REFERENCE_TPS

    result = {
        "fixture": str(args.fixture.name),
        "tokenization": how,
        "tokens": len(tokens),
        "console": f"{WIDTH}x{HEIGHT} force_terminal truecolor -> StringIO",
        "decode_tps": round(tps, 2),
        "decode_tps_source": tps_source,
        "decode_s_for_all_tokens": round(decode_s, 2),
        "renderer_fast": fast,
        "renderer_paced_at_decode_tps": paced,
        f"renderer_paced_at_{REFERENCE_TPS:g}_tps": paced20,
        "renderer_pct_of_decode": {
            "at_decode_tps": round(100 * paced["total_s"] / decode_s, 2),
            f"at_{REFERENCE_TPS:g}_tps": round(100 * paced20["total_s"] / decode20_s, 2),
        },
        "naive_full_rerender": naive,
        "renderer_same_tokens_as_naive_paced_at_decode_tps": {
            "tokens": ours_same["tokens"],
            "total_s": ours_same["total_s"],
            "mean_ms_per_token": ours_same["mean_ms_per_token"],
        },
        "targets": {
            "ratio_last_first_le_2": max(r["ratio_last_first"] for r in (fast, paced, paced20)) <= 2,
            "pct_of_decode_le_5": max(paced["total_s"] / decode_s, paced20["total_s"] / decode20_s) <= 0.05,
        },
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
