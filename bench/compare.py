"""`:compare` of 3 variants vs three separate `:retry`s from a cold cache, on a ~500-token conversation.

The compare computes the shared prompt once (its first variant) and each further variant only its last
token; three retries with the cache dropped before each (what a user gets who reloads or switches chats, and
what a tool without a kept cache does every time) compute the whole prompt three times. Both run the same
seeds, so the answers must be the same (the turns are reproducible): the benchmark checks that too. Rounds
alternate the two so that machine noise hits them alike. Prints one JSON line per run, then a JSON summary.

    python bench/compare.py                        # the demo model on CPU
    python bench/compare.py --device cuda --rounds 3
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from qwenchat.chat.session import ChatSession  # noqa: E402
from qwenchat.compare.run import run_compare  # noqa: E402
from qwenchat.conversation.model import Conversation, Message  # noqa: E402
from qwenchat.engines.transformers.engine import TransformersEngine  # noqa: E402
from qwenchat.models.loader import LoadOptions, load, resolve  # noqa: E402

SEEDS = (1, 2, 3)
FIXTURE = Path(__file__).resolve().parent / "fixtures" / "long_answer.md"


class _Quiet:
    def variant_start(self, label: str, describe: str) -> None:
        pass

    def variant_done(self, result: object) -> None:
        pass


def conversation(tokenizer, target: int) -> Conversation:
    """A system prompt, an exchange whose answer is cut to make ~`target` prompt tokens, a question."""
    text = FIXTURE.read_text(encoding="utf-8")
    conv = Conversation(system="You are a helpful assistant.")
    conv.add_user("Explain how a hash map works, with examples.")
    conv.add_assistant(text)
    conv.add_user("Summarise that in three sentences.")
    conv.add_assistant("(placeholder)")
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    lo, hi = 0, len(ids)
    while lo < hi:  # the longest cut of the answer that keeps the prompt within the target
        mid = (lo + hi + 1) // 2
        conv.messages[1] = Message("assistant", tokenizer.decode(ids[:mid]))
        chat = conv.to_chat()[:-1]
        prompt = tokenizer.apply_chat_template(chat, add_generation_prompt=True, tokenize=False)
        if len(tokenizer(prompt, add_special_tokens=False)["input_ids"]) <= target:
            lo = mid
        else:
            hi = mid - 1
    conv.messages[1] = Message("assistant", tokenizer.decode(ids[:lo]))
    return conv


def run_compare_once(session: ChatSession) -> dict:
    session.engine.reset()  # cold, as the retries start
    t0 = time.perf_counter()
    run = run_compare(session, "seed=" + ",".join(map(str, SEEDS)), _Quiet())
    total = time.perf_counter() - t0
    session.conversation.messages[-1] = Message("assistant", "(placeholder)")  # drop the alternatives
    return {
        "contestant": "compare",
        "total_s": round(total, 3),
        "prefilled_tokens": [r.stats.prefilled_tokens for r in run.results],
        "answers": [r.text for r in run.results],
    }


def run_retries_once(session: ChatSession) -> dict:
    prefilled, answers = [], []
    t0 = time.perf_counter()
    for seed in SEEDS:
        session.engine.reset()  # a cold cache before each
        result = session.retry(seed)
        prefilled.append(result.stats.prefilled_tokens)
        answers.append(result.text)
    total = time.perf_counter() - t0
    session.conversation.messages[-1] = Message("assistant", "(placeholder)")
    return {
        "contestant": "3 retries",
        "total_s": round(total, 3),
        "prefilled_tokens": prefilled,
        "answers": answers,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-c", "--model", default="demo", help="model directory (default: the demo model)")
    p.add_argument("--tokens", type=int, default=500, help="the conversation's prompt length")
    p.add_argument("--new-tokens", type=int, default=32, help="max_new_tokens per answer")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    options = LoadOptions(cpu_only=args.device == "cpu")
    loaded = load(resolve(args.model, demo=args.model == "demo"), options)
    engine = TransformersEngine(loaded.model, loaded.tokenizer, loaded.name)
    session = ChatSession(engine, conversation=conversation(loaded.tokenizer, args.tokens))
    session.settings.update({"do_sample": True, "temperature": 0.8, "max_new_tokens": args.new_tokens})
    session.conversation.messages.pop()  # the prompt of the last answer: the conversation without it
    prompt_tokens = engine.count_tokens(session.request())
    session.conversation.add_assistant("(placeholder)")
    runs: dict[str, list[dict]] = {"compare": [], "3 retries": []}
    for _ in range(args.rounds):
        for fn in (run_compare_once, run_retries_once):
            record = fn(session)
            runs[record["contestant"]].append(record)
            print(json.dumps({k: v for k, v in record.items() if k != "answers"}), flush=True)
    compare_s = statistics.median(r["total_s"] for r in runs["compare"])
    retries_s = statistics.median(r["total_s"] for r in runs["3 retries"])
    same = all(c["answers"] == r["answers"] for c, r in zip(runs["compare"], runs["3 retries"], strict=True))
    summary = {
        "model": loaded.name,
        "device": loaded.device,
        "dtype": loaded.dtype,
        "prompt_tokens": prompt_tokens,
        "variants": len(SEEDS),
        "max_new_tokens": args.new_tokens,
        "compare_total_s": compare_s,
        "retries_total_s": retries_s,
        "speedup": round(retries_s / compare_s, 2),
        "compare_prefilled_tokens": sum(runs["compare"][0]["prefilled_tokens"]),
        "retries_prefilled_tokens": sum(runs["3 retries"][0]["prefilled_tokens"]),
        "same_answers": same,
    }
    print(json.dumps({"summary": summary}), flush=True)


if __name__ == "__main__":
    main()
