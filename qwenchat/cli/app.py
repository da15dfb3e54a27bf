"""Command line: parse arguments first (instant --help), then check what can be checked, load the model and
run the chat or the subcommand."""

from __future__ import annotations

from collections.abc import Sequence
from typing import IO, TYPE_CHECKING, Any

from qwenchat.cli.options import BatchOptions, ChatOptions, CheckOptions, DiffOptions, ReportOptions
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
        options = parse(argv)  # --help and argparse's own errors exit here, before anything heavy loads
    except UsageError as exc:  # an option in the wrong place: one line that says where it goes
        _renderer(env.stderr).error(first_line(exc))
        return 2
    if env.stdin_isatty:
        import signal

        # A parent that ignored SIGINT (some launchers, nohup-like wrappers) would make Ctrl-C dead here.
        signal.signal(signal.SIGINT, signal.default_int_handler)

    err = _renderer(env.stderr, no_color=options.no_color)
    try:
        if isinstance(options, DiffOptions):
            from qwenchat.cli import batch

            return batch.diff(options, env, err)
        if isinstance(options, CheckOptions):
            from qwenchat.cli import batch

            return batch.check(options, err, _engines(env), env)
        if isinstance(options, ReportOptions):
            from qwenchat.cli.report import report

            return report(options, err)
        if isinstance(options, BatchOptions):
            return _batch(options, env, err)
        return _chat(options, env, err)
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


def _renderer(stream: IO[str], *, no_color: bool = False, side: Any = None) -> Renderer:
    from qwenchat.ui.render import Renderer
    from qwenchat.ui.terminal import make_console

    return Renderer(make_console(stream, plain=True if no_color else None), side=side)


def _batch(options: BatchOptions, env: Environment, err: Renderer) -> int:
    """`qwenchat batch`: every input checked before the model loads, then the runs."""
    from qwenchat.cli import batch

    if (startup := _startup(options, env, err)) is None:
        return 2
    if (inputs := batch.prepare(options, err)) is None:
        return 2
    make = _engines(env)
    if (made := make(options.model, err)) is None:
        return 2
    engine, banner = made
    if (extra := batch.more_engines(options, banner, make, err)) is None:
        return 2
    return batch.run(options, startup, engine, banner, inputs, err, extra, make=make)


def _chat(options: ChatOptions, env: Environment, err: Renderer) -> int:
    """The chat: the start-up inputs checked before the model loads, then the loop."""
    from qwenchat.cli.chat import run_chat

    if (startup := _startup(options, env, err)) is None:
        return 2
    make = _engines(env)
    if (made := make(options.model, err)) is None:
        return 2
    engine, banner = made
    # Output to a pipe or file holds the answers only: everything else goes to stderr.
    side = None if env.stdout_isatty else err.console
    out = _renderer(env.stdout, no_color=options.no_color, side=side)  # [chat] may change markdown, think
    return run_chat(options, startup, env, engine, banner, out, err, make)


def _engines(env: Environment) -> EngineFactory:
    """The environment's engine factory (tests: a fake), else the real engines."""
    if env.engine_factory is not None:
        return env.engine_factory
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
