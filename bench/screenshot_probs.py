"""Make docs/probs.svg for the README: a real demo-model answer's `:probs` heat map and an `:alt`.

Loads the demo model (transformers engine), answers one question with probabilities on (sampled, seed 7), and
renders `:probs` and `:alt N` (N: the least confident token) on a recording 100-column truecolor console.

    python bench/screenshot_probs.py [--out docs/probs.svg]
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

from rich.console import Console
from rich.text import Text

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from qwenchat.chat.session import ChatSession  # noqa: E402
from qwenchat.engines.transformers.engine import TransformersEngine  # noqa: E402
from qwenchat.models.loader import LoadOptions, load, resolve  # noqa: E402
from qwenchat.probs.record import summarize  # noqa: E402
from qwenchat.ui.render import Renderer  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
QUESTION = "In one sentence: why is the sky blue?"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "probs.svg")
    args = ap.parse_args(argv)

    loaded = load(resolve("demo", demo=True), LoadOptions(cpu_only=True))
    chat = ChatSession(TransformersEngine(loaded.model, loaded.tokenizer, loaded.name))
    chat.settings.update({"max_new_tokens": 60})
    chat.settings.set_seed("7")
    chat.probs_k = 5
    result = chat.send(QUESTION)
    probs = chat.conversation.messages[-1].probs

    console = Console(
        file=io.StringIO(), force_terminal=True, width=100, height=30, color_system="truecolor", record=True
    )
    r = Renderer(console)
    prompt = ("› ", "bold magenta")
    r._print(Text.assemble(prompt, QUESTION))
    r._print(Text(result.text))
    r._print(Text.assemble(prompt, ":probs"))
    r.token_probs(probs)
    worst = summarize(probs, 1).least[0][0]
    r._print(Text.assemble(prompt, f":alt {worst}"))
    r.token_alternatives(worst, probs[worst - 1])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    r.export_svg(args.out, title="qwenchat · :probs")
    print(args.out)


if __name__ == "__main__":
    main()
