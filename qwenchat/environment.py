"""Everything the command line takes from the outside world, in one object that tests replace wholesale
(as httpie's Environment): the standard streams, whether they are terminals, the environment variables, the
config and data directories, prompt-toolkit's input and output, and how an engine is built from the model
options."""

from __future__ import annotations

import io
import os
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from qwenchat import paths

if TYPE_CHECKING:
    from qwenchat.cli.options import ModelOptions
    from qwenchat.engines.api import Engine
    from qwenchat.ui.render import Renderer

# Builds the engine the model options ask for, with what the banner says about it ({"model", "device",
# "dtype", "extra"}); None after it has printed a one-line error through the renderer it gets.
EngineFactory = Callable[["ModelOptions", "Renderer"], "tuple[Engine, dict[str, Any]] | None"]


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):  # no isatty, or a closed stream
        return False


@dataclass
class Environment:
    stdin: IO[str] = field(default_factory=lambda: sys.stdin)
    stdout: IO[str] = field(default_factory=lambda: sys.stdout)
    stderr: IO[str] = field(default_factory=lambda: sys.stderr)
    stdin_isatty: bool | None = None  # None: ask the stream
    stdout_isatty: bool | None = None
    environ: Mapping[str, str] = field(default_factory=lambda: os.environ)
    engine_factory: EngineFactory | None = None  # None: cli.engine.make_engine (the real engines)
    prompt_input: Any = None  # prompt-toolkit Input/Output; None: the terminal (tests: a pipe input)
    prompt_output: Any = None

    def __post_init__(self) -> None:
        if self.stdin_isatty is None:
            self.stdin_isatty = _isatty(self.stdin)
        if self.stdout_isatty is None:
            self.stdout_isatty = _isatty(self.stdout)

    @property
    def config_dir(self) -> Path:
        return paths.config_dir(self.environ)

    @property
    def data_dir(self) -> Path:
        return paths.data_dir(self.environ)

    @property
    def config_file(self) -> Path:
        return self.config_dir / "config.toml"

    def stdin_lines(self) -> Iterator[str]:
        """Lines of stdin; undecodable bytes are replaced rather than ending the session."""
        try:
            fd = self.stdin.fileno()
        except (AttributeError, OSError, io.UnsupportedOperation):  # a StringIO in tests
            yield from self.stdin
            return
        yield from open(fd, encoding="utf-8", errors="replace", closefd=False)
