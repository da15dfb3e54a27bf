"""The command-line side of `--compile` (engines/transformers/compile.py): refused before any model loads
where it cannot work, switched on for the transformers engine, and the decode step compiled under a spinner
before the first prompt. Torch-free itself: the refusals must not import torch."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from qwenchat.engines.api import Engine, SupportsCompiledDecode

if TYPE_CHECKING:
    from qwenchat.cli.options import ModelOptions
    from qwenchat.settings import Settings
    from qwenchat.ui.render import Renderer

HELP = "transformers on a GPU: a static KV cache and a torch.compile'd decode step (compiles once)"


def add_flag(group: Any) -> None:
    group.add_argument("--compile", action="store_true", help=HELP)


def refusal(options: ModelOptions) -> str | None:
    """One line when the flags ask for --compile where it cannot work, else None."""
    if not options.compile:
        return None
    if options.endpoint or options.engine != "transformers":
        return "--compile is for the transformers engine (not --engine llama.cpp or --endpoint)"
    if options.draft_model or options.prompt_lookup_num_tokens:
        return "--compile does not combine with speculative decoding (--lookup, --draft-model)"
    return None


def apply(engine: Engine, options: ModelOptions) -> None:
    """Switch a freshly made transformers engine to the static cache and the compiled decode step."""
    if options.compile:
        from qwenchat.engines.transformers.compile import enable

        enable(engine)


def warm_up(engine: Engine, settings: Settings, err: Renderer) -> None:
    """Compile now, for the first turn's cache size, rather than as a pause inside the first answer."""
    if not isinstance(engine, SupportsCompiledDecode) or not engine.compiled:
        return
    try:
        with err.status("compiling the decode step (--compile; once) …"):
            engine.warm_up_compiled(settings.effective().get("max_new_tokens"))
    except Exception as exc:  # a backend that cannot build this model here: the chat still works, eagerly
        from qwenchat.errors import first_line

        engine.drop_compiled()
        err.error(f"--compile: the decode step did not compile ({first_line(exc)}); decoding without it")
