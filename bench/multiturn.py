"""Multi-turn time to first token: qwenchat's engines (KV cache kept) vs a copy of Qwen's cli_demo loop.

One process, the contestants interleaved turn by turn so machine noise hits them alike: qwenchat's
transformers engine, the seed's loop and plain `model.generate` on one loaded model, and, when
llama-cpp-python is installed and a GGUF is known, qwenchat's llama.cpp engine on that GGUF. Each keeps
its own history (its own answers). Prints one JSON line per turn per contestant, then a JSON summary,
then the per-turn table as markdown on stderr.

    python bench/multiturn.py                         # the demo model (and its GGUF for llama.cpp)
    python bench/multiturn.py -c DIR --gguf FILE      # any local model, and a GGUF of it
    python bench/multiturn.py --llamacpp off          # transformers only
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

from transformers import TextIteratorStreamer  # noqa: E402
from transformers.generation.streamers import BaseStreamer  # noqa: E402

from qwenchat.chat.session import ChatSession  # noqa: E402
from qwenchat.conversation.model import Conversation  # noqa: E402
from qwenchat.engines.api import GenerationRequest, TurnStats  # noqa: E402
from qwenchat.engines.transformers.engine import TransformersEngine  # noqa: E402
from qwenchat.models.loader import LoadOptions, load, resolve  # noqa: E402

QUESTIONS = [
    "Write a Python function that checks whether a string is a palindrome.",
    "Now make it ignore punctuation and case.",
    "Add type hints and a docstring.",
    "Write three pytest tests for it.",
    "How would I do the same in JavaScript?",
    "Explain the time complexity of your solution.",
    "Can you make it work on a stream of characters?",
    "Write a function that finds the longest palindromic substring.",
    "What is Manacher's algorithm, briefly?",
    "Summarise everything we wrote in a short list.",
]
SYSTEM = "You are a helpful assistant."


class _Clock(BaseStreamer):
    """Records when the first and last generated tokens arrive; nothing else."""

    def __init__(self) -> None:
        self.first = self.last = None
        self.n = -1  # the first put is the prompt

    def put(self, value):
        self.n += 1
        if self.n == 0:
            return
        now = time.perf_counter()
        self.first = self.first or now
        self.last = now

    def end(self):
        pass


def seed_turn(model, tokenizer, history, query, gen):
    """Qwen's cli_demo: full re-template, TextIteratorStreamer, generate in a thread, every turn."""
    conversation = [{"role": "system", "content": SYSTEM}]
    for q, r in history:
        conversation += [{"role": "user", "content": q}, {"role": "assistant", "content": r}]
    conversation.append({"role": "user", "content": query})
    t0 = time.perf_counter()
    inputs = tokenizer.apply_chat_template(
        conversation, add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    inputs = {k: v.to(model.device) for k, v in inputs.items()}
    streamer = TextIteratorStreamer(
        tokenizer=tokenizer, skip_prompt=True, timeout=60, skip_special_tokens=True
    )
    th = threading.Thread(target=model.generate, kwargs={**inputs, "streamer": streamer, **gen})
    th.start()
    first = None
    text = ""
    n_chunks = 0
    for piece in streamer:
        if first is None:
            first = time.perf_counter()
        text += piece
        n_chunks += 1
    th.join()
    t_end = time.perf_counter()
    new = gen["max_new_tokens"]
    return text, {
        "prompt_tokens": int(inputs["input_ids"].shape[1]),
        "ttft_s": first - t0,
        "decode_tps": (new - 1) / (t_end - first),
    }


def plain_generate(model, tokenizer, conversation, gen):
    ids = tokenizer.apply_chat_template(
        conversation, add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    ids = {k: v.to(model.device) for k, v in ids.items()}
    clock = _Clock()
    t0 = time.perf_counter()
    model.generate(**ids, streamer=clock, **gen)
    return {"ttft_s": clock.first - t0, "decode_tps": (clock.n - 1) / (clock.last - clock.first)}


def engine_row(name: str, turn: int | str, st: TurnStats) -> dict:
    return {
        "contestant": name,
        "turn": turn,
        "prompt_tokens": st.prompt_tokens,
        "reused_tokens": st.reused_tokens,
        "prefilled_tokens": st.prefilled_tokens,
        "generated_tokens": st.generated_tokens,
        "ttft_s": round(st.ttft_s, 4),
        "decode_tps": round(st.decode_tps, 2),
    }


def engine_turn(engine, messages: list[dict], settings: dict) -> tuple[str, TurnStats]:
    chunks = list(engine.stream(GenerationRequest(list(messages), settings), threading.Event()))
    if chunks[-1].error:
        raise SystemExit(f"{engine.name}: {chunks[-1].error}")
    return "".join(c.text for c in chunks), chunks[-1].stats


def chat_session(engine, settings: dict) -> ChatSession:
    """qwenchat as the REPL runs it, without a terminal: one ChatSession keeps the history and the cache."""
    session = ChatSession(engine, conversation=Conversation(system=SYSTEM))
    session.settings.update(settings)
    return session


def session_turn(session: ChatSession, query: str, warm: bool) -> tuple[TurnStats, float | None, int]:
    """One turn; with `warm`, then the typing pause as the REPL has it: the engine computes the answer
    just given into its cache, and the seconds that took are returned (the pause it needs). Also the
    tokens of the turn's own segment (its message and the assistant header): what the schedule says the
    turn should compute when the last answer was computed while the user typed."""
    engine = session.engine
    before = GenerationRequest(session.request().messages)
    known = len(engine._tokenize(engine.render_prompt(before, generation_prompt=False)))
    result = session.send(query)
    if result.error or result.stats is None:
        raise SystemExit(f"{engine.name}: {result.error}")
    own = result.stats.prompt_tokens - known
    if not warm:
        return result.stats, None, own
    session.warm()
    return result.stats, round(engine.idle(), 4), own


def ttft_rounds(engine, settings: dict, turns: int, rounds: int, warm: bool) -> list[list[float]]:
    """The whole conversation again `rounds` times from an empty cache (a fresh session each time): every
    turn's TTFT per round, so the first and last turns are compared on medians, not on one noisy reading."""
    out = []
    for _ in range(rounds):
        engine.reset()
        session = chat_session(engine, settings)
        out.append([session_turn(session, q, warm)[0].ttft_s for q in QUESTIONS[:turns]])
    return out


def median_ratio(runs: list[list[float]]) -> dict:
    first = statistics.median(r[0] for r in runs)
    last = statistics.median(r[-1] for r in runs)
    return {
        "rounds": len(runs),
        "ttft_first_median_s": round(first, 4),
        "ttft_last_median_s": round(last, 4),
        "ttft_last_over_first_median": round(last / first, 3),
        "ttft_later_turns_median_s": round(statistics.median(t for r in runs for t in r[1:]), 4),
    }


def llamacpp_engine(args, threads: int):
    """qwenchat's llama.cpp engine on the GGUF, or None where it cannot run (and why, on stderr)."""
    if args.llamacpp == "off":
        return None
    try:
        import llama_cpp  # noqa: F401
    except ImportError:
        if args.llamacpp == "on":
            hint = "pip install 'qwenchat[llamacpp]'"
            raise SystemExit(f"--llamacpp on needs llama-cpp-python: {hint}") from None
        print("llama.cpp engine skipped: llama-cpp-python is not installed", file=sys.stderr)
        return None
    if args.gguf:
        gguf = Path(args.gguf)
    elif args.checkpoint == "demo":
        from qwenchat.models.demo import ensure_gguf

        gguf = ensure_gguf()
    elif args.checkpoint.endswith(".gguf"):
        gguf = Path(args.checkpoint)
    else:
        if args.llamacpp == "on":
            raise SystemExit("--llamacpp on needs --gguf FILE for a non-GGUF checkpoint")
        print("llama.cpp engine skipped: no GGUF (give --gguf FILE)", file=sys.stderr)
        return None
    from qwenchat.engines.llamacpp.engine import LlamaCppEngine

    return LlamaCppEngine(gguf, n_ctx=args.n_ctx, n_threads=threads)


def markdown_table(rows: dict[str, list[dict]]) -> str:
    """Per-turn TTFT (prompt tokens) and decode speed, one column pair per contestant."""
    names = [n for n in ("qwenchat", "llamacpp", "seed") if rows.get(n)]
    titles = {
        "qwenchat": "qwenchat, transformers",
        "llamacpp": "qwenchat, llama.cpp",
        "seed": "cli_demo loop",
    }
    head = "| turn | " + " | ".join(f"{titles[n]}: TTFT (prompt tokens) | tok/s" for n in names) + " |"
    lines = [head, "|---" * (1 + 2 * len(names)) + "|"]
    for i in range(len(rows[names[0]])):
        cells = [str(i + 1)]
        for n in names:
            r = rows[n][i]
            cells += [f"{r['ttft_s']:.3f} s ({r['prompt_tokens']})", f"{r['decode_tps']:.1f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("-c", "--checkpoint", default="demo")
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--turns", type=int, default=10)
    ap.add_argument("--dtype", default="auto")
    ap.add_argument(
        "--decode-rounds",
        type=int,
        default=5,
        help="extra interleaved rounds of engine vs plain generate on one prompt, for decode speed",
    )
    ap.add_argument(
        "--llamacpp",
        choices=["auto", "on", "off"],
        default="auto",
        help="also run the llama.cpp engine (auto: when llama-cpp-python is installed and a GGUF is known)",
    )
    ap.add_argument(
        "--ttft-rounds",
        type=int,
        default=4,
        help="extra rounds of the whole conversation per qwenchat engine, for the first/last TTFT medians",
    )
    ap.add_argument("--gguf", help="the GGUF for the llama.cpp engine (default: the demo's, or -c FILE.gguf)")
    ap.add_argument("--n-ctx", type=int, default=4096, help="llama.cpp context size")
    ap.add_argument(
        "--warm",
        choices=["on", "off"],
        default="on",
        help="between qwenchat's turns, let the engine compute the last answer into its cache as the REPL "
        "does while the user types (the seconds it takes are reported as warm_s); off: turns back to back",
    )
    args = ap.parse_args()

    loaded = load(resolve(args.checkpoint, demo=args.checkpoint == "demo"), LoadOptions(dtype=args.dtype))
    model, tok = loaded.model, loaded.tokenizer
    torch.set_grad_enabled(False)
    n = args.new_tokens
    settings = {"do_sample": False, "max_new_tokens": n, "min_new_tokens": n}
    gen = {**settings, "pad_token_id": tok.eos_token_id}
    engine = TransformersEngine(model, tok, loaded.name)
    llama = llamacpp_engine(args, torch.get_num_threads())
    # llama.cpp has no min_new_tokens: its answers may end sooner, at end of sequence.
    llama_settings = {"do_sample": False, "max_new_tokens": n}

    # Warm-up: first calls pay one-off costs that belong to none of the contestants.
    hi = [{"role": "user", "content": "hi"}]
    engine_turn(engine, hi, settings)
    engine.reset()
    seed_turn(model, tok, [], "hi", gen)
    if llama is not None:
        engine_turn(llama, hi, llama_settings)
        llama.reset()

    rows: dict[str, list[dict]] = {"qwenchat": [], "seed": [], "plain_generate": []}
    # The qwenchat contestants are headless chat sessions, each with its own history and KV cache.
    chat = chat_session(engine, settings)
    llama_chat = chat_session(llama, llama_settings) if llama is not None else None
    seed_history: list[tuple[str, str]] = []
    for turn, q in enumerate(QUESTIONS[: args.turns], 1):
        # (a) qwenchat's transformers engine
        st, warm_s, own = session_turn(chat, q, args.warm == "on")
        rows["qwenchat"].append({**engine_row("qwenchat", turn, st), "warm_s": warm_s, "own_segment": own})
        print(json.dumps(rows["qwenchat"][-1]), flush=True)
        # (a') qwenchat's llama.cpp engine
        if llama_chat is not None:
            st, warm_s, own = session_turn(llama_chat, q, args.warm == "on")
            row = {**engine_row("llamacpp", turn, st), "warm_s": warm_s, "own_segment": own}
            rows.setdefault("llamacpp", []).append(row)
            print(json.dumps(rows["llamacpp"][-1]), flush=True)
        # (b) the seed's loop
        text, m = seed_turn(model, tok, seed_history, q, gen)
        seed_history.append((q, text))
        row = {
            "contestant": "seed",
            "turn": turn,
            **{k: round(v, 4) if isinstance(v, float) else v for k, v in m.items()},
        }
        rows["seed"].append(row)
        print(json.dumps(row), flush=True)
        # (c) plain model.generate on the same prompt: the decode-speed reference
        m = plain_generate(model, tok, chat.request().messages[:-1], gen)
        row = {"contestant": "plain_generate", "turn": turn, **{k: round(v, 4) for k, v in m.items()}}
        rows["plain_generate"].append(row)
        print(json.dumps(row), flush=True)

    # Decode speed on a noisy shared machine: alternate the two many times on the same prompt, take medians.
    decode = {"qwenchat": [], "plain_generate": []}
    prompt = chat.request().messages[:3]
    for _ in range(args.decode_rounds):
        engine.reset()
        chunks = list(engine.stream(GenerationRequest(list(prompt), settings), threading.Event()))
        decode["qwenchat"].append(chunks[-1].stats.decode_tps)
        decode["plain_generate"].append(plain_generate(model, tok, prompt, gen)["decode_tps"])
    print(
        json.dumps({"decode_rounds": {k: [round(v, 2) for v in vs] for k, vs in decode.items()}}), flush=True
    )
    # The TTFT ratio again on medians: the conversation from scratch, a few more times per engine.
    repeated = {"qwenchat": ttft_rounds(engine, settings, args.turns, args.ttft_rounds, args.warm == "on")}
    if llama is not None:
        repeated["llamacpp"] = ttft_rounds(
            llama, llama_settings, args.turns, args.ttft_rounds, args.warm == "on"
        )
    for name, runs in repeated.items():
        runs.insert(0, [r["ttft_s"] for r in rows[name]])  # the interleaved round above is one of them
        print(
            json.dumps({"contestant": name, "ttft_rounds": [[round(t, 4) for t in r] for r in runs]}),
            flush=True,
        )
    llama_cold = None
    if llama is not None:
        # llama.cpp's last turn again from an empty cache: what that turn costs without prefix reuse.
        llama.reset()
        _, llama_cold = engine_turn(llama, llama_chat.request().messages[:-1], llama_settings)
        print(json.dumps(engine_row("llamacpp", "last-cold", llama_cold)), flush=True)

    def ttft(name, i):
        return rows[name][i]["ttft_s"]

    plain_tps = statistics.median(r["decode_tps"] for r in rows["plain_generate"])
    summary = {
        "summary": True,
        "model": loaded.name,
        "device": loaded.device,
        "dtype": loaded.dtype,
        "threads": torch.get_num_threads(),
        "new_tokens_per_turn": n,
        "warm_between_turns": args.warm == "on",
        "qwenchat_warm_s_max": max((r["warm_s"] or 0.0 for r in rows["qwenchat"]), default=None),
        "turns": len(rows["qwenchat"]),
        # after the first turn, did each turn compute its own message only (the schedule's promise)?
        "qwenchat_prefilled_only_own_segment": all(
            r["prefilled_tokens"] == r["own_segment"] for r in rows["qwenchat"][1:]
        ),
        "qwenchat_ttft_turn_last_over_first": round(ttft("qwenchat", -1) / ttft("qwenchat", 0), 3),
        "qwenchat_ttft_medians": median_ratio(repeated["qwenchat"]),
        "seed_ttft_turn_last_over_first": round(ttft("seed", -1) / ttft("seed", 0), 3),
        "qwenchat_over_seed_ttft_at_last_turn": round(ttft("qwenchat", -1) / ttft("seed", -1), 3),
        "plain_generate_decode_tps_median": round(plain_tps, 2),
        "qwenchat_decode_vs_plain": round(
            statistics.median(r["decode_tps"] for r in rows["qwenchat"]) / plain_tps, 3
        ),
        "qwenchat_decode_vs_plain_interleaved_rounds": round(
            statistics.median(decode["qwenchat"]) / statistics.median(decode["plain_generate"]), 3
        )
        if decode["qwenchat"]
        else None,
        "seed_decode_vs_plain": round(
            statistics.median(r["decode_tps"] for r in rows["seed"]) / plain_tps, 3
        ),
    }
    if llama is not None:
        summary.update(
            {
                "llamacpp_gguf": llama.name,
                "llamacpp_ttft_turn_last_over_first": round(ttft("llamacpp", -1) / ttft("llamacpp", 0), 3),
                "llamacpp_ttft_medians": median_ratio(repeated["llamacpp"]),
                "llamacpp_prefilled_only_own_segment": all(
                    r["prefilled_tokens"] == r["own_segment"] for r in rows["llamacpp"][1:]
                ),
                "llamacpp_ttft_last_warm_over_cold": round(ttft("llamacpp", -1) / llama_cold.ttft_s, 3),
                "llamacpp_over_seed_ttft_at_last_turn": round(ttft("llamacpp", -1) / ttft("seed", -1), 3),
                "llamacpp_decode_tps_median": round(
                    statistics.median(r["decode_tps"] for r in rows["llamacpp"]), 2
                ),
                "llamacpp_decode_vs_plain": round(
                    statistics.median(r["decode_tps"] for r in rows["llamacpp"]) / plain_tps, 3
                ),
                "llamacpp_warm_s_max": max((r["warm_s"] or 0.0 for r in rows["llamacpp"]), default=None),
            }
        )
    print(json.dumps(summary), flush=True)
    print(markdown_table(rows), file=sys.stderr)


if __name__ == "__main__":
    main()
