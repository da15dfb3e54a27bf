"""How often the demo model (Qwen2.5-Coder-0.5B) answers a tool prompt with a valid call: N tries with the
model's own sampling settings and seeds 0..N-1 (one greedy try too), each parsed by qwenchat.tools.calls.
Prints JSON. Usage: python bench/toolcall_rate.py [N]"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from qwenchat.chat.session import ChatSession  # noqa: E402
from qwenchat.engines.transformers.engine import TransformersEngine  # noqa: E402
from qwenchat.models.loader import LoadOptions, load, resolve  # noqa: E402
from tests.support.demo_tools import WEATHER, WEATHER_PROMPT  # noqa: E402


def try_once(engine: TransformersEngine, seed: int | None) -> dict:
    session = ChatSession(engine)
    session.toolbox.definitions = [WEATHER]
    session.settings.seed = seed if seed is not None else 0
    session.settings.update({"max_new_tokens": 64})  # a call is ~25 tokens; prose past 64 is no call
    if seed is None:
        session.settings.update({"temperature": 0})
    result = session.send(WEATHER_PROMPT)
    calls = result.tool_calls
    good = [c for c in calls if c.valid and c.name == "get_weather" and "city" in (c.arguments or {})]
    return {
        "seed": seed,
        "calls": len(calls),
        "valid": bool(good) and all(c.valid for c in calls),
        "city": good[0].arguments["city"] if good else None,
        "problems": [c.problem for c in calls if c.problem],
        "text": result.text[:200],
    }


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    loaded = load(resolve("demo", demo=True), LoadOptions(cpu_only=True))
    engine = TransformersEngine(loaded.model, loaded.tokenizer, loaded.name)
    t0 = time.perf_counter()
    greedy = try_once(engine, None)
    print(json.dumps(greedy), file=sys.stderr, flush=True)  # progress: one line per try
    tries = []
    for seed in range(n):
        tries.append(try_once(engine, seed))
        print(json.dumps(tries[-1]), file=sys.stderr, flush=True)
    print(
        json.dumps(
            {
                "model": loaded.name,
                "prompt": WEATHER_PROMPT,
                "greedy_valid": greedy["valid"],
                "tries": n,
                "valid": sum(t["valid"] for t in tries),
                "seconds": round(time.perf_counter() - t0, 1),
                "details": [greedy, *tries],
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
