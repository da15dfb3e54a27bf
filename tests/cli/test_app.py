"""The command line in-process: main(argv, env) with a replaced Environment and the fake engine."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import pytest

from qwenchat.cli.app import main
from qwenchat.conversation.model import DEFAULT_SYSTEM, Conversation
from qwenchat.conversation.store import SessionStore
from qwenchat.environment import Environment
from tests.support.fakes import FakeEngine

BANNER = {"model": "fake-model", "device": "test-device", "dtype": "test-dtype", "extra": ["adapter: x"]}


class Run:
    """One in-process run of qwenchat: its environment, the engine it got, what it printed."""

    def __init__(self, tmp_path: Path, stdin: str = "", *, tty: bool = False, answers=()) -> None:
        self.engine = FakeEngine().enqueue(list(answers))
        self.factory_calls: list = []
        self.dirs = {"QWENCHAT_DATA_DIR": tmp_path / "data", "QWENCHAT_CONFIG_DIR": tmp_path / "config"}
        self.env = Environment(
            stdin=io.StringIO(stdin),
            stdout=io.StringIO(),
            stderr=io.StringIO(),
            stdin_isatty=tty,
            stdout_isatty=tty,  # a terminal is both; in a pipe run stdout holds the answers only
            environ={k: str(v) for k, v in self.dirs.items()},
            engine_factory=self._factory,
        )

    def _factory(self, args, err):
        self.factory_calls.append(args)
        return self.engine, BANNER

    def __call__(self, *argv: str) -> int:
        self.rc = main(list(argv), self.env)
        return self.rc

    @property
    def out(self) -> str:
        return self.env.stdout.getvalue()

    @property
    def err(self) -> str:
        return self.env.stderr.getvalue()

    def config(self, text: str) -> None:
        self.dirs["QWENCHAT_CONFIG_DIR"].mkdir(parents=True, exist_ok=True)
        (self.dirs["QWENCHAT_CONFIG_DIR"] / "config.toml").write_text(text, encoding="utf-8")

    def store(self) -> SessionStore:
        return SessionStore(self.dirs["QWENCHAT_DATA_DIR"] / "sessions")


def test_pipe_mode_chats_and_autosaves_into_the_environments_dir(tmp_path):
    run = Run(tmp_path, "hello\n:q\nnever sent\n", answers=["hi there"])
    assert run() == 0
    assert "hi there" in run.out and run.err == ""
    assert [r.messages[-1]["content"] for r in run.engine.requests] == ["hello"]
    [saved] = run.store().list()
    assert [m.content for m in saved.conversation.messages] == ["hello", "hi there"]
    assert "qwenchat · " not in run.out  # no banner when stdin is not a terminal


def test_no_autosave_writes_nothing(tmp_path):
    run = Run(tmp_path, "hello\n")
    assert run("--no-autosave") == 0
    assert not (tmp_path / "data" / "sessions").exists()


def test_resume_continues_the_saved_session(tmp_path):
    run = Run(tmp_path, ":his\nand now?\n", answers=["second answer"])
    conv = Conversation(system="Be terse.")
    conv.add_user("first question")
    conv.add_assistant("first answer")
    run.store().autosave(
        "20260101-000000-abcd", conv, model="fake-model", settings_overrides={"top_p": 0.5}, seed=7
    )
    assert run("--resume") == 0, run.err
    # stdout holds the answers only: the notice and :his go to stderr
    assert "resumed 20260101-000000-abcd: 1 exchanges" in run.err and "first answer" in run.err
    assert run.out.strip() == "second answer"
    req = run.engine.requests[-1]
    assert [m["content"] for m in req.messages] == ["Be terse.", "first question", "first answer", "and now?"]
    assert req.seed == 7 and req.settings["top_p"] == 0.5
    [saved] = run.store().list()  # the same session goes on
    assert saved.id == "20260101-000000-abcd" and saved.conversation.exchanges() == 2


def test_resume_of_an_unknown_session_fails_before_loading_the_model(tmp_path):
    run = Run(tmp_path, "")
    assert run("--resume", "nope") == 2
    assert run.err.startswith("error: no saved sessions") and len(run.err.strip().splitlines()) == 1
    assert run.factory_calls == []


def test_settings_precedence_flag_over_file_over_model(tmp_path):
    run = Run(tmp_path, "hi\n:conf\n")
    run.config("[generation]\ntemperature = 0.3\ntop_p = 0.5\n")
    assert run("--temperature", "0.1") == 0, run.err
    settings = run.engine.requests[-1].settings
    assert settings["temperature"] == 0.1  # flag
    assert settings["top_p"] == 0.5  # config file
    assert settings["do_sample"] is True  # the model's own default
    assert "temperature  0.1  flag" in run.err  # command output: stderr in a pipe run
    assert "top_p  0.5  config" in run.err
    assert "do_sample  True  model" in run.err


def test_a_bad_config_file_is_one_line_before_loading(tmp_path):
    run = Run(tmp_path, "")
    run.config("[generation]\ntemperature = 'hot'\n")
    assert run() == 2
    assert run.err.startswith("error: ") and "temperature" in run.err
    assert len(run.err.strip().splitlines()) == 1 and run.factory_calls == []


@pytest.mark.parametrize(
    "flags,file_system,expected",
    [
        ([], None, DEFAULT_SYSTEM),
        ([], "From the file.", "From the file."),
        (["--system", "From the flag."], "From the file.", "From the flag."),
        (["--system", "-"], "From the file.", None),
        ([], "-", None),
    ],
)
def test_system_prompt_precedence(tmp_path, flags, file_system, expected):
    run = Run(tmp_path, "hi\n")
    if file_system is not None:
        run.config(f'[chat]\nsystem = "{file_system}"\n')
    assert run(*flags) == 0, run.err
    first = run.engine.requests[-1].messages[0]
    if expected is None:
        assert first == {"role": "user", "content": "hi"}
    else:
        assert first == {"role": "system", "content": expected}


def test_stats_from_the_chat_table(tmp_path):
    run = Run(tmp_path, "hi\n")
    run.config("[chat]\nstats = true\n")
    assert run() == 0
    assert "prompt 10 tok" in run.err and "prompt 10 tok" not in run.out


def test_banner_in_a_terminal(tmp_path):
    from prompt_toolkit.input import create_pipe_input
    from prompt_toolkit.output import DummyOutput

    run = Run(tmp_path, tty=True, answers=["pong"])
    with create_pipe_input() as inp:
        inp.send_text("ping\r:q\r")
        run.env.prompt_input, run.env.prompt_output = inp, DummyOutput()
        assert run("--seed", "42") == 0, run.err
    lines = run.out.splitlines()
    assert lines[0] == "qwenchat · fake-model · test-device · test-dtype"
    assert lines[1:3] == ["adapter: x", "context 4096 tokens · seed 42"]
    assert lines[3].startswith("Type :h for help")
    assert "pong" in run.out and (tmp_path / "data" / "history").exists()


def test_engine_factory_failure_is_exit_status_2(tmp_path):
    run = Run(tmp_path, "hi\n")
    run.env.engine_factory = lambda args, err: None
    assert run() == 2 and run.out == ""


def test_help_does_not_import_torch():
    code = (
        "import sys\nfrom qwenchat.cli.app import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in ('torch', 'transformers', 'prompt_toolkit') if m in sys.modules))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "usage: qwenchat" in proc.stdout
    assert proc.stdout.strip().splitlines()[-1] == "[]"


# -- issue 17: pipe runs -------------------------------------------------------------------------------
def test_pipe_run_stdout_is_the_answers_and_a_failed_line_sets_the_exit_status(tmp_path):
    run = Run(tmp_path, ":conf temperature=abc\n:seed 5\nhello\n:nosuch\n", answers=["hi there"])
    assert run() == 1  # every line ran, and the status says one failed
    assert run.out == "hi there\n"
    assert "error: temperature" in run.err and "seed: 5" in run.err and "error: unknown command" in run.err


def test_pipe_run_autosave_is_marked_and_not_last(tmp_path):
    run = Run(tmp_path, "from a pipe\n")
    assert run() == 0
    [saved] = run.store().list()
    assert saved.piped


def test_resume_banner_shows_the_resumed_seed(tmp_path):
    from prompt_toolkit.input import create_pipe_input
    from prompt_toolkit.output import DummyOutput

    run = Run(tmp_path, tty=True)
    conv = Conversation()
    run.store().autosave("20260101-000000-abcd", conv, model="fake-model", settings_overrides={}, seed=42)
    with create_pipe_input() as inp:
        inp.send_text(":q\r")
        run.env.prompt_input, run.env.prompt_output = inp, DummyOutput()
        assert run("--resume") == 0, run.err
    assert "seed 42" in run.out and "seed 1234" not in run.out
