"""An answer's token probabilities drawn for the terminal (`:probs`, `:alt`): built here, printed by Renderer.

Colours are backgrounds with a fixed foreground, so the scale reads the same on dark and light terminals.
Without colour (NO_COLOR, --no-color, a pipe) a token below LOW_MARK is followed by its index and
probability instead, e.g. `Paris⟨#12 31%⟩`, so the least likely tokens stand out in plain text too.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from rich.text import Text

from qwenchat.probs.record import TokenProb, summarize
from qwenchat.text.visible import visible_controls as safe

# (lowest probability of the band, style, legend label); the first band a token reaches is its style.
BANDS: list[tuple[float, str, str]] = [
    (0.9, "", "≥90%"),
    (0.6, "black on #e4e4a0", "60–90%"),
    (0.3, "black on #ffb060", "30–60%"),
    (0.1, "white on #d05000", "10–30%"),
    (0.0, "bold white on #a00000", "<10%"),
]
FORCED_STYLE = "black on #87afd7"
LOW_MARK = 0.5  # without colour, tokens below this carry their index
SOURCE_LABELS = {
    "raw": "the model's raw distribution (before temperature, top-k, top-p)",
    "server": "as the server reported them (it does not say before or after sampling settings)",
}


def band_style(prob: float | None) -> str:
    if prob is None:
        return FORCED_STYLE
    return next(style for low, style, _ in BANDS if prob >= low)


def percent(prob: float | None) -> str:
    if prob is None:
        return "forced"
    return f"{prob * 100:.0f}%" if prob >= 0.01 else f"{prob * 100:.2f}%"


def visible_token(text: str) -> str:
    """A token as one line: spaces, newlines and tabs shown (␣ \\n \\t), control characters visible."""
    return safe(text.replace(" ", "␣").replace("\n", "\\n").replace("\t", "\\t").replace("\r", "\\r"))


def heat_text(probs: Sequence[TokenProb], *, color: bool) -> Text:
    """The answer, token by token, coloured (or marked) by probability."""
    out = Text()
    for i, p in enumerate(probs, start=1):
        text = safe(p.text)
        prob = p.prob
        if color:
            out.append(text, style=band_style(prob))
        else:
            out.append(text)
            if prob is None or prob < LOW_MARK:
                out.append(f"⟨#{i} {percent(prob)}⟩")
    return out


def legend(*, color: bool, source: str) -> Text:
    label = SOURCE_LABELS.get(source, source)
    if not color:
        return Text(f"⟨#N p⟩ marks token N when its probability is below {LOW_MARK:.0%}; {label}")
    out = Text("legend: ")
    for _, style, name in BANDS:
        out.append(f" {name} " if style else f"{name} plain", style=style)
        out.append(" ")
    out.append(" forced ", style=FORCED_STYLE)
    out.append(f"  · {label}")
    return out


def summary_lines(probs: Sequence[TokenProb], least: int = 5) -> list[str]:
    """Mean log-probability, perplexity, and the least-confident positions with their index."""
    s = summarize(probs, least)
    if not s.tokens:
        return ["no token of this answer has a probability (all forced)"]
    lines = [f"{s.tokens} tokens · mean logprob {s.mean_logprob:.3f} · perplexity {s.perplexity:.2f}"]
    sampled = [p.sampled_logprob for p in probs if p.sampled_logprob is not None and not p.forced]
    if sampled:
        mean = sum(sampled) / len(sampled)
        lines.append(
            f"in the distribution chosen from (after temperature, top-k, top-p, ...): mean logprob {mean:.3f}"
        )
    worst = " · ".join(f"#{i} {visible_token(p.text)} {percent(p.prob)}" for i, p in s.least)
    lines.append(f"least confident: {worst}")
    return lines


def alt_rows(p: TokenProb) -> tuple[list[str], list[list[str]]]:
    """`:alt N`: (headers, rows) of the candidates at one position, the chosen one marked."""
    sampled = {a.id: a for a in p.sampled_top or []}
    headers = ["", "rank", "token", "raw" if p.source == "raw" else "server"]
    if p.sampled_top is not None:
        headers.append("sampled")
    rows = []
    for rank, alt in enumerate(p.top, start=1):
        row = ["→" if alt.id == p.id and not p.forced else "", str(rank), visible_token(alt.text)]
        row.append(percent(alt.prob))
        if p.sampled_top is not None:
            s = sampled.get(alt.id)
            row.append(percent(s.prob) if s is not None else "0% (cut)")
        rows.append(row)
    if p.rank() is None:
        row = ["→", "-", visible_token(p.text), percent(p.prob)]
        if p.sampled_top is not None:
            row.append(percent(None if p.sampled_logprob is None else math.exp(p.sampled_logprob)))
        rows.append(row)
    return headers, rows


def score_lines(total: float, tokens: int) -> list[str]:
    """`:score`'s own line, before the heat map and summary `:probs` shows: the answer's total."""
    return [f"the given answer, teacher-forced: {tokens} tokens · total logprob {total:.3f}"]
