"""JSON-schema answers: decode speed constrained (llguidance's token mask) vs unconstrained, and what
compiling the schema adds to the time to first token. The demo model, transformers engine, on one loaded
model; the two kinds of turn interleaved so machine noise hits both alike. Prints one JSON line per turn,
then a JSON summary (the target: constrained decode ≥ 0.7× unconstrained).

    python bench/json_schema.py                 # 3 rounds per schema
    python bench/json_schema.py --rounds 5 --max-new-tokens 64
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from qwenchat.chat.session import ChatSession  # noqa: E402
from qwenchat.engines.transformers.engine import TransformersEngine  # noqa: E402
from qwenchat.models.loader import LoadOptions, load, resolve  # noqa: E402
from qwenchat.structured.schema import load_schema  # noqa: E402
from qwenchat.structured.schema import schema as structured  # noqa: E402

SCHEMAS = Path(__file__).resolve().parent.parent / "tests" / "schemas"
PROMPTS = {
    "person": "Invent a user of a wiki as JSON: name, age, role.",
    "todos": "Give me a short to-do list as JSON.",
    "order": "Invent a shop order as JSON with the customer's name and address.",
}


def turn(session: ChatSession, prompt: str, schema: dict | None, seed: int) -> dict:
    session.json_schema = schema
    session.settings.seed = seed
    session.clear()  # the same prefill work for both kinds: an empty cache
    structured._GRAMMARS.clear()  # the schema compiled within this turn's time to first token
    result = session.send(prompt)
    s = result.stats
    return {
        "constrained": schema is not None,
        "generated": s.generated_tokens,
        "ttft_s": round(s.ttft_s, 4),
        "decode_tps": round(s.decode_tps, 2),
        "valid": result.json_check[0] if result.json_check else None,
    }


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--schemas", default=",".join(PROMPTS), help="which of person,todos,order")
    a = p.parse_args()
    t = time.perf_counter()
    loaded = load(resolve("demo", demo=True), LoadOptions(cpu_only=True))
    engine = TransformersEngine(loaded.model, loaded.tokenizer, loaded.name)
    load_s = time.perf_counter() - t
    # One-off per model: llguidance's copy of the tokenizer (kept for the process).
    t = time.perf_counter()
    structured.ll_tokenizer(engine.tokenizer, engine.model.config.vocab_size, engine.eos_ids)
    tokenizer_s = time.perf_counter() - t
    session = ChatSession(engine)
    # Sampling with a fixed seed; the unconstrained turn may not stop early, so both run the full budget.
    session.settings.update({"do_sample": True, "temperature": 0.7, "max_new_tokens": a.max_new_tokens})
    rows: list[dict] = []
    compile_s: dict[str, float] = {}
    for name in a.schemas.split(","):
        prompt = PROMPTS[name]
        schema = load_schema(SCHEMAS / f"{name}.json")
        t = time.perf_counter()
        structured.grammar(schema)
        compile_s[name] = round(time.perf_counter() - t, 4)
        turn(session, prompt, None, 0)  # warm-up
        for r in range(a.rounds):
            for constrained in (False, True):
                used = schema if constrained else None
                row = {"schema": name, "round": r, **turn(session, prompt, used, r)}
                rows.append(row)
                print(json.dumps(row), flush=True)

    def med(key: str, constrained: bool) -> float:
        return statistics.median(x[key] for x in rows if x["constrained"] is constrained)

    free, fixed = med("decode_tps", False), med("decode_tps", True)
    summary = {
        "model": loaded.name,
        "load_s": round(load_s, 1),
        "llguidance_tokenizer_s (once per model)": round(tokenizer_s, 2),
        "schema_to_grammar_s": compile_s,
        "decode_tps_unconstrained": free,
        "decode_tps_constrained": fixed,
        "ratio": round(fixed / free, 3) if free else None,
        "ttft_s_unconstrained": med("ttft_s", False),
        "ttft_s_constrained": med("ttft_s", True),
        "ttft_added_s": round(med("ttft_s", True) - med("ttft_s", False), 4),
        "valid": f"{sum(1 for x in rows if x['valid'])}/{sum(1 for x in rows if x['constrained'])}",
        "target": "ratio >= 0.7",
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
