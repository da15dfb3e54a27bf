"""Command line: parse arguments first (instant --help), then check what can be checked, load the model and
run the chat or the subcommand."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from qwenchat.cli.options import BatchOptions, ChatOptions, DiffOptions
from qwenchat.cli.parser import UsageError, parse
from qwenchat.environment import Environment
from qwenchat.errors import UserError, first_line

if TYPE_CHECKING:
    from qwenchat.cli.startup import Startup
    from qwenchat.environment import EngineFactory
    from qwenchat.ui.render import Renderer


def main(argv: Sequence[str] | None = None, env: Environment | None = None) -> int:
    """Run qwenchat; `env` replaces the outside world (streams, tty flags, variables, dirs, engine)."""
    env = env or Environment()
    try:
        options = parse(argv)
    except UsageError as exc:
        from qwenchat.ui.render import Renderer
        from qwenchat.ui.terminal import make_console

        Renderer(make_console(env.stderr)).error(first_line(exc))
        return 2
    from qwenchat.ui.render import Renderer
    from qwenchat.ui.terminal import make_console

    if env.stdin_isatty:
        import signal

        # A parent that ignored SIGINT (some launchers, nohup-like wrappers) would make Ctrl-C dead here.
        signal.signal(signal.SIGINT, signal.default_int_handler)

    plain = True if options.no_color else None
    err = Renderer(make_console(env.stderr, plain=plain))
    try:
        if isinstance(options, DiffOptions):
            from qwenchat.cli import batch

            return batch.diff(options, env, err)
        return _run(options, env, err)
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


def _run(options: ChatOptions | BatchOptions, env: Environment, err: Renderer) -> int:
    """A chat or a batch: the checks before the model load, the load, then the run."""
    if (startup := _startup(options, env, err)) is None:
        return 2
    inputs = None
    if isinstance(options, BatchOptions):
        from qwenchat.cli import batch

        if (inputs := batch.prepare(options, err)) is None:
            return 2
    make = env.engine_factory or _real_engines()
    made = make(options.model, err)
    if made is None:
        return 2
    engine, banner = made
    if inputs is not None:
        from qwenchat.cli import batch

        return batch.run(options, startup, engine, banner, inputs, err)
    from qwenchat.cli.chat import run_chat
    from qwenchat.ui.render import Renderer
    from qwenchat.ui.terminal import make_console

    # Output to a pipe or file holds the answers only: everything else goes to stderr.
    side = None if env.stdout_isatty else err.console
    plain = True if options.no_color else None
    out = Renderer(make_console(env.stdout, plain=plain), side=side)  # [chat] may change markdown, think
    return run_chat(options, startup, env, engine, banner, out, err, make)


def _real_engines() -> EngineFactory:
    from qwenchat.cli.engine import make_engine

    return make_engine


def _startup(options: ChatOptions | BatchOptions, env: Environment, err: Renderer) -> Startup | None:
    """What can be checked before the slow model load; None after the error's lines."""
    from qwenchat.cli.startup import read_startup
    from qwenchat.cli.testbench_flags import error_lines

    try:
        return read_startup(options, env.config_file, env.data_dir)
    except UserError as exc:
        for line in error_lines(exc):  # a tools file: one line per problem
            err.error(line)
        return None
