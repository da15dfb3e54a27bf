"""`:export` writes the per-token data of the answers beside the Markdown, as JSON (chat.tokens.json)."""

from __future__ import annotations

import json
from pathlib import Path

from qwenchat.conversation.model import Conversation
from qwenchat.probs.record import probs_to_list, summarize

FORMAT = "qwenchat-tokens/1"


def tokens_path(markdown_path: Path) -> Path:
    return markdown_path.with_name(markdown_path.stem + ".tokens.json")


def tokens_json(conversation: Conversation, *, model: str) -> str | None:
    """The token data of every answer that has some, by answer number (1-based, as :copy counts them);
    None when no answer has any."""
    answers = []
    n = 0
    for m in conversation.messages:
        if m.role != "assistant":
            continue
        n += 1
        if m.probs is None:
            continue
        s = summarize(m.probs)
        answers.append(
            {
                "answer": n,
                "tokens": len(m.probs),
                "mean_logprob": s.mean_logprob,
                "perplexity": s.perplexity,
                "probs": probs_to_list(m.probs),
            }
        )
    if not answers:
        return None
    doc = {
        "format": FORMAT,
        "model": model,
        "note": "logprob/top: the distribution named by source (raw: the model's own, before sampling "
        "settings; server: as the server reported it); sampled_*: the one the token was chosen from",
        "answers": answers,
    }
    return json.dumps(doc, ensure_ascii=False, indent=1) + "\n"
