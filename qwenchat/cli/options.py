"""What the command line asked for, as typed objects: the parser (cli/parser.py) fills them, and nothing
past the command line sees an argparse namespace. Each subcommand has its own object; the model and
generation options are shared by the chat and `batch`. The defaults are the parser's (a test checks that
they agree), so a test or an embedder can build one without parsing."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from qwenchat.config_file import FLAG_KEYS


@dataclass(frozen=True)
class ModelOptions:
    """Which model and engine to load, and how the engine runs: everything an engine factory reads."""

    checkpoint_path: str | None = None  # -c MODEL
    demo: bool = False
    source: str = "auto"
    revision: str | None = None
    cache_dir: str | None = None
    offline: bool = False
    cpu_only: bool = False
    gpus: str = "auto"
    dtype: str = "auto"
    adapter: tuple[str, ...] = ()
    merge_adapter: bool = False
    load_in_8bit: bool = False
    load_in_4bit: bool = False
    attn_implementation: str | None = None
    engine: str = "transformers"
    compile: bool = False
    n_ctx: int = 4096
    threads: int | None = None
    endpoint: str | None = None
    api_key: str | None = None
    trust_remote_code: bool = False
    no_template: bool = False  # plain completion (models/templates.py)
    chat_template: str | None = None  # --chat-template FILE
    mmproj: str | None = None  # --mmproj FILE: a GGUF's image projector (llama.cpp)
    # In the parser's generation group, but they decide how the engine is built.
    draft_model: str | None = None
    prompt_lookup_num_tokens: int | None = None  # --lookup N
    no_cache_reuse: bool = False

    def for_spec(self, spec: str) -> ModelOptions:
        """The same options for another model (`:model SPEC`): `demo` is --demo, anything else is -c's;
        an adapter or a chat template belongs to the model it was given for, so neither carries over."""
        demo = spec == "demo"
        return dataclasses.replace(
            self,
            demo=demo,
            checkpoint_path=None if demo else spec,
            adapter=(),
            chat_template=None,
            no_template=False,
        )


@dataclass(frozen=True)
class GenerationOptions:
    """The run's seed, sampling flags, system prompt, schema and context policy."""

    seed: int = 1234
    max_new_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    repetition_penalty: float | None = None
    system: str | None = None  # None: the config file's, else the default; "-": none
    json_schema: str | None = None  # a file name
    overflow: str = "drop-oldest"


def given_flags(model: ModelOptions, generation: GenerationOptions) -> dict[str, Any]:
    """The generation settings given as flags (the settings' `flag` layer), unchecked."""
    values = {f.name: getattr(o, f.name) for o in (model, generation) for f in dataclasses.fields(o)}
    return {k: values[k] for k in FLAG_KEYS if values.get(k) is not None}


@dataclass(frozen=True)
class ChatOptions:
    """`qwenchat [options]`: the chat."""

    model: ModelOptions = field(default_factory=ModelOptions)
    generation: GenerationOptions = field(default_factory=GenerationOptions)
    read: tuple[str, ...] = ()  # files before the first message
    image: tuple[str, ...] = ()  # images with the first message
    resume: str | None = None  # a session id, or "last"
    no_autosave: bool = False
    stats: bool = False
    probs: int = 0  # top-K alternatives per token; 0: off
    no_markdown: bool = False
    think: str | None = None  # None: the config file's [chat] think, else fold
    no_color: bool = False
    reasoning: str = "auto"
    reasoning_budget: str | None = None
    tools: str | None = None
    tool_mocks: str | None = None


@dataclass(frozen=True)
class BatchOptions:
    """`qwenchat batch PROMPTS --out FILE.jsonl [options]`: every prompt (x vars x grid x seeds) once."""

    prompts: str
    out: str | None = None  # required, but refused in one line by the batch itself, not by argparse
    model: ModelOptions = field(default_factory=ModelOptions)
    generation: GenerationOptions = field(default_factory=GenerationOptions)
    vars: str | None = None  # a CSV of {{name}} values
    grid: tuple[str, ...] = ()  # KEY=V1,V2 axes
    seeds: str | None = None  # "1,2,3"
    parallel: int = 1  # requests in flight at once (--endpoint only)
    checks: str | None = None  # a file of checks applied to every prompt
    judge: str | None = None  # the model that grades `judge` checks (None: the model under test)
    fail_under: str | None = None  # "0.9" or "90%": the pass rate that still exits 0
    no_color: bool = False


@dataclass(frozen=True)
class CheckOptions:
    """`qwenchat check RESULTS.jsonl [--checks FILE]`: a results file graded again, nothing generated."""

    results: str
    checks: str | None = None
    judge: str | None = None  # the model for `judge` checks (the only ones that need one)
    fail_under: str | None = None
    out: str | None = None  # where the graded records go (None: nowhere; the table says it all)
    no_color: bool = False


@dataclass(frozen=True)
class DiffOptions:
    """`qwenchat diff OLD NEW`: two batch results files compared."""

    old: str
    new: str
    no_color: bool = False


@dataclass(frozen=True)
class ReportOptions:
    """`qwenchat report RESULTS.jsonl [-o report.html]`: a results file as one HTML page."""

    results: str
    output: str | None = None  # None: RESULTS with .html
    no_color: bool = False


Options = ChatOptions | BatchOptions | DiffOptions | ReportOptions | CheckOptions
