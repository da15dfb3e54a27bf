"""The engine the model options ask for (the real `Environment.engine_factory`), with what the banner
says about it. Every refusal is one line through the renderer it gets and None."""

from __future__ import annotations

import dataclasses
import os
from typing import TYPE_CHECKING, Any

from qwenchat.cli import compile_flags
from qwenchat.cli.options import ModelOptions
from qwenchat.cli.parser import DEFAULT_CHECKPOINT
from qwenchat.engines.api import SupportsTemplateChoice
from qwenchat.errors import UserError, first_line

if TYPE_CHECKING:
    from qwenchat.engines.api import Engine
    from qwenchat.ui.render import Renderer


def _quiet_libraries() -> None:
    """Per-turn warnings from transformers mean nothing to a chat user; errors still show."""
    import warnings

    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()  # "Loading weights" bars fight our spinner; hub download bars stay
    warnings.filterwarnings("ignore", category=UserWarning, module="transformers")
    warnings.filterwarnings("ignore", category=FutureWarning)


def make_engine(options: ModelOptions, err: Renderer) -> tuple[Engine, dict[str, Any]] | None:
    """The engine the options ask for, with what the banner says about it; None after a one-line error."""
    try:
        if line := compile_flags.refusal(options):
            raise UserError(line)
        if options.threads is not None and options.threads < 1:
            raise UserError(f"--threads must be 1 or more, not {options.threads}")
        if options.endpoint and (options.no_template or options.chat_template):
            flag = "--no-template" if options.no_template else "--chat-template"
            raise UserError(
                f"{flag} needs an in-process engine: with --endpoint the server applies its template"
            )
        if options.mmproj and options.engine != "llama.cpp":
            raise UserError(
                "--mmproj is a GGUF's image projector: it needs --engine llama.cpp (a transformers vision "
                "model reads images as it is, an --endpoint server has its own)"
            )
        if options.endpoint:
            from qwenchat.engines.openai.engine import OpenAIEngine

            engine = OpenAIEngine(options.endpoint, model=options.checkpoint_path, api_key=options.api_key)
            with err.status(f"connecting to {engine.base_url} …"):
                engine.connect()
            return engine, {"model": engine.name, "device": engine.base_url, "dtype": "remote", "extra": []}
        template = _template_file(options)  # before the slow load: a bad file costs no wait
        make = _make_llamacpp if options.engine == "llama.cpp" else _make_transformers
        made = make(options, err, template)
        if made is not None and isinstance(made[0], SupportsTemplateChoice):
            choice = made[0].template_choice
            if choice.notice:
                err.notice(choice.notice)
            elif choice.plain:
                made[1]["extra"].append("plain completion (--no-template): each message continues the text")
        return made
    except UserError as exc:  # EngineError, LoadError, DemoError: one line, exit status 2
        err.error(first_line(exc))
        return None


def _make_transformers(
    options: ModelOptions, err: Renderer, template: str | None
) -> tuple[Engine, dict[str, Any]]:
    from qwenchat.models import templates
    from qwenchat.models.loader import LoadOptions, load, resolve

    _quiet_libraries()
    source = resolve(options.checkpoint_path or DEFAULT_CHECKPOINT, demo=options.demo)
    load_options = LoadOptions(
        source=options.source,
        cpu_only=options.cpu_only,
        gpus=options.gpus,
        dtype=options.dtype,
        trust_remote_code=options.trust_remote_code,
        revision=options.revision,
        cache_dir=options.cache_dir,
        offline=options.offline,
        adapters=list(options.adapter),
        merge_adapter=options.merge_adapter,
        load_in_8bit=options.load_in_8bit,
        load_in_4bit=options.load_in_4bit,
        attn_implementation=options.attn_implementation,
    )
    with err.status(f"loading {source.spec} …") as update:
        loaded = load(source, load_options, progress=update)
    from qwenchat.engines.transformers.engine import TransformersEngine

    kwargs = dict(
        reuse_cache=not options.no_cache_reuse,
        adapters=loaded.adapters,
        weights=loaded.weights,
        template_choice=templates.for_tokenizer(
            loaded.tokenizer, loaded.name, file=template, plain=options.no_template
        ),
    )
    if loaded.processor is not None:  # a vision chat model: images in messages
        from qwenchat.engines.transformers.vision import VisionEngine

        engine: TransformersEngine = VisionEngine(
            loaded.model, loaded.tokenizer, loaded.processor, loaded.name, **kwargs
        )
    else:
        engine = TransformersEngine(loaded.model, loaded.tokenizer, loaded.name, **kwargs)
    if options.draft_model:
        from qwenchat.engines.speculative import check_same_vocab

        with err.status(f"loading the draft model {options.draft_model} …") as update:
            plain = dataclasses.replace(load_options, adapters=[], merge_adapter=False)  # as published
            spec = options.draft_model
            draft = load(resolve(spec, demo=spec == "demo"), plain, progress=update)
        check_same_vocab(loaded.tokenizer, draft.tokenizer, options.draft_model)
        engine.draft_model = draft.model
    compile_flags.apply(engine, options)
    banner = {
        "model": loaded.name,
        "device": loaded.device,
        "dtype": loaded.dtype,
        "extra": loaded_extra(loaded),
    }
    return engine, banner


def _make_llamacpp(
    options: ModelOptions, err: Renderer, template: str | None
) -> tuple[Engine, dict[str, Any]] | None:
    from qwenchat.models import demo

    if options.demo:
        with err.status("preparing the demo GGUF …") as update:
            path = str(demo.ensure_gguf(update))
    elif options.checkpoint_path and options.checkpoint_path.endswith(".gguf"):
        path = options.checkpoint_path
    else:
        err.error("--engine llama.cpp needs a .gguf file: -c FILE.gguf, or --demo")
        return None
    from qwenchat.engines.llamacpp.engine import LlamaCppEngine

    with err.status(f"loading {path} with llama.cpp …"):
        engine = LlamaCppEngine(
            path,
            n_ctx=options.n_ctx,
            n_threads=options.threads,
            reuse_cache=not options.no_cache_reuse,
            name=demo.DEMO_GGUF_NAME if options.demo else None,
            chat_template=template,
            plain=options.no_template,
            mmproj=options.mmproj,
        )
    return engine, {"model": engine.name, "device": "cpu (llama.cpp)", "dtype": "GGUF", "extra": []}


def _template_file(options: ModelOptions) -> str | None:
    """The --chat-template file's text, read before the model loads (a bad file costs no wait)."""
    if options.chat_template is None:
        return None
    from qwenchat.models.templates import read_template_file

    return read_template_file(options.chat_template)


def loaded_extra(loaded: Any) -> list[str]:
    extra = []
    adapters = getattr(loaded, "adapters", None)
    if adapters:
        switchable = not any(a.endswith(" (merged)") for a in adapters)
        note = " active (:adapter switches)" if switchable else ""
        extra.append("adapter: " + ", ".join(adapters) + note)
    return extra
