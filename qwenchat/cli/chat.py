"""`qwenchat [options]`: the chat, from the checked start-up inputs and a loaded engine to the loop (a
terminal, or the lines of a pipe)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from qwenchat.cli import compile_flags, testbench_flags
from qwenchat.cli.options import ChatOptions
from qwenchat.cli.startup import Startup, session_inputs
from qwenchat.errors import UserError, first_line

if TYPE_CHECKING:
    from qwenchat.chat.session import ChatSession
    from qwenchat.engines.api import Engine
    from qwenchat.environment import EngineFactory, Environment
    from qwenchat.ui.render import Renderer
    from qwenchat.ui.repl import Repl


def model_switch(
    options: ChatOptions, startup: Startup, make: EngineFactory, session: ChatSession, renderer: Renderer
) -> Callable[[str], None]:
    """What `:model SPEC` runs: the start-up options for another model, under the same config file and
    flags; the new engine takes over the session."""
    from qwenchat.chat.switch import Switcher, switch_in_chat

    switcher = Switcher(
        lambda spec, status: make(options.model.for_spec(spec), status),
        startup.generation_table,
        startup.flags,
    )
    return lambda spec: switch_in_chat(session, renderer, switcher, spec)


def _start_files(repl: Repl, options: ChatOptions, startup: Startup) -> None:
    """What --json-schema and --read put into the chat from the start: UserError (one line) when a file
    cannot be used."""
    if startup.schema is not None:
        from qwenchat.commands.structured import set_schema

        repl.session.json_schema = set_schema(repl, startup.schema)  # as :json FILE does
    if options.read:
        from qwenchat.chat.attach import read_file
        from qwenchat.paths import expand_user

        files = [read_file(expand_user(name), name) for name in options.read]
        counts = repl.session.attach(files)
        repl.renderer.info(f"read {len(files)} file{'s' if len(files) > 1 else ''}: {counts}")
    if options.image:
        from qwenchat.commands.image import attach_images

        attach_images(repl.session, repl.renderer, list(options.image))


def run_chat(
    options: ChatOptions,
    startup: Startup,
    env: Environment,
    engine: Engine,
    banner: dict[str, Any],
    out: Renderer,
    err: Renderer,
    make: EngineFactory,
) -> int:
    """The chat's exit status: 0, 1 when a piped line failed, 2 for settings that do not fit the model,
    130 after Ctrl-C in a pipe run."""
    from qwenchat.chat.session import ChatSession
    from qwenchat.conversation.model import Conversation
    from qwenchat.ui.repl import Repl

    chat_file = startup.chat_table
    # A flag beats the config file's [chat] table, which beats the defaults.
    out.think = options.think or chat_file.get("think", "fold")
    out.markdown = not options.no_markdown and chat_file.get("markdown", True)
    try:
        system, settings = session_inputs(options.generation, startup, engine)
        compile_flags.warm_up(engine, settings, err)
        session = ChatSession(
            engine,
            conversation=Conversation(system=system),
            settings=settings,
            store=startup.store,
            overflow=options.generation.overflow,
            piped=not env.stdin_isatty,
        )
        session.probs_k = options.probs
        session.fingerprint_soon()
        for line in testbench_flags.apply(session, options, startup.toolbox):
            out.notice(line)
        repl = Repl(
            session,
            out,
            show_stats=options.stats or bool(chat_file.get("stats", False)),
            switch_model=model_switch(options, startup, make, session, out),
        )
        saved = startup.saved
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
        _start_files(repl, options, startup)
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
