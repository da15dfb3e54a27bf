"""Make docs/screenshot.svg for the README: a streamed answer as the terminal shows it once it is done.

Feeds bench/fixtures/screenshot_answer.md (a think block, a code fence, a list, a table) a token at a time
through the real renderer on a recording 100x40 console, then exports what reached scrollback.

    python bench/screenshot.py [--out docs/screenshot.svg]
"""

from __future__ import annotations

import argparse
import io
import re
import sys
from pathlib import Path

from rich.console import Console
from rich.text import Text

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from qwenchat.ui.render import Renderer  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = Path(__file__).parent / "fixtures" / "screenshot_answer.md"
MODEL = "Qwen2.5-Coder-0.5B-Instruct"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshot.svg")
    args = ap.parse_args(argv)

    console = Console(
        file=io.StringIO(), force_terminal=True, width=100, height=40, color_system="truecolor", record=True
    )
    now = [0.0]
    r = Renderer(console, think="fold", clock=lambda: now[0])
    r.banner(model=MODEL, device="cpu", dtype="bfloat16", extra=["context 32768 tokens · seed 1234"])
    r._print(Text.assemble(("› ", "bold magenta"), "How do I reverse a linked list in Python?"))
    view = r.answer(MODEL)
    tokens = re.findall(r"\s+|\w+|[^\w\s]", FIXTURE.read_text(encoding="utf-8"))
    for token in tokens:
        now[0] += 0.05  # 20 tokens/s
        view.feed(token)
    view.end("stop")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    r.export_svg(args.out, title="qwenchat")
    print(args.out)


if __name__ == "__main__":
    main()
