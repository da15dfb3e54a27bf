"""Records as `qwenchat batch` writes them (plus the check and score fields), with hostile text where a
model, a prompt file or a server could put it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

HOSTILE = [
    "<script>window.__pwned = 1</script>",
    "</details></article></td></tr></table><h1 id=injected>x</h1>",
    '" onmouseover="window.__pwned = 1" x="',
    "' onfocus='window.__pwned = 1' autofocus '",
    '<img src=x onerror="window.__pwned = 1">',
    "\x1b]0;title\x07 \x1b[31mred\x1b[0m \x00 \x9b31m \r\n \x7f \u2028 \ud800",
    "</style><style>body { display: none }</style>",
    "</script><script>window.__pwned = 1</script>",
    "<!-- --> <![CDATA[ ]]> &amp; &lt;b&gt; &#x3C;",
    "[click](javascript:window.__pwned=1) ![t](http://127.0.0.1:9/track.png) <http://127.0.0.1:9/auto>",
    "```html\n<script>window.__pwned = 1</script>\n```",
    "<think>thinking <script>window.__pwned = 1</script></think>\n\nThe **answer** </details> is `42`.",
]


def record(index: int, variant: str, seed: int, answer: str, **extra: Any) -> dict[str, Any]:
    overrides = {"temperature": {"A": "0", "B": "0.7"}.get(variant, "1")} if variant else {}
    settings = {"max_new_tokens": 64, "temperature": float(overrides.get("temperature", 0))}
    r = {
        "key": f"p{index}/{variant}/s{seed}#abc{index}",
        "id": f"p{index}/{variant}/s{seed}" if variant else f"p{index}/s{seed}",
        "prompt_index": index,
        "vars_index": None,
        "prompt_hash": f"abc{index}",
        "variant": variant,
        "variant_overrides": overrides,
        "seed": seed,
        "prompt": f"Question {index}",
        "system": "You are a helpful assistant.",
        "messages": [{"role": "user", "content": f"Question {index}"}],
        "settings": settings,
        "adapter": None,
        "model": "demo",
        "engine": "transformers",
        "answer": answer,
        "finish_reason": "stop",
        "error": None,
        "tokens": {"prompt": 20, "generated": 9},
        "ttft_s": 0.1,
        "tok_s": 9.5,
        "total_s": 1.0,
        "qwenchat_version": "0.1.0",
        "finished_at": "2026-12-07T07:00:00+00:00",
    }
    r.update(extra)
    return r


def hostile_records() -> list[dict[str, Any]]:
    """Every hostile text as an answer, and in every other place a record carries text; two variants,
    checks (a judge among them) and reference scores, so every part of the page is drawn."""
    out = []
    for n, text in enumerate(HOSTILE, 1):
        for variant in ("A", "B"):
            checks = [
                {"name": "contains", "pass": variant == "A", "detail": f"needs {text!r}"},
                {"name": text[:30], "pass": True, "detail": text},
                {
                    "name": "judge",
                    "pass": n % 2 == 0,
                    "detail": text,
                    "judge": {"prompt": f"Grade: {text}", "answer": text},
                },
            ]
            out.append(
                record(
                    n,
                    variant,
                    1,
                    f"Answer {n}{variant}. {text}",
                    prompt=f"Question {n}: {text}",
                    system=text,
                    messages=[
                        {"role": "user", "content": text},
                        {"role": "assistant", "content": text},
                        {"role": "user", "content": f"Question {n}: {text}"},
                    ],
                    error=text if n == 3 else None,
                    key=f"p{n}/{variant}/s1#{text[:8]}\"'<",
                    checks=checks,
                    passed=all(c["pass"] for c in checks),
                    ref_logprob=-1.5 * n,
                    ref_ppl=1.1 * n,
                    fingerprint={"note": text},
                    reference=f"The reference. {text}",
                )
            )
            out[-1]["variant_overrides"]["system"] = HOSTILE[1]  # a variant's label text is shown too
    return out


def write(path: Path, records: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path
