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


def test_help_of_the_chat_and_every_command_does_not_import_torch():
    code = (
        "import sys\nfrom qwenchat.cli.app import main\n"
        "for argv in (['--help'], ['batch', '--help'], ['diff', '--help']):\n"
        "    try:\n        main(argv)\n    except SystemExit as exc:\n        assert exc.code == 0\n"
        "print(sorted(m for m in ('torch', 'transformers', 'prompt_toolkit') if m in sys.modules))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    chat, batch, diff = proc.stdout.split("usage: ")[1:]
    assert chat.startswith("qwenchat [-c MODEL] [options]") and "--resume" in chat and "\n  --out" not in chat
    assert "qwenchat batch PROMPTS --out FILE.jsonl" in chat and "qwenchat diff OLD NEW" in chat
    assert batch.startswith("qwenchat batch PROMPTS") and "--out FILE.jsonl" in batch and "--demo" in batch
    assert "\n  --out" in batch and "--resume" not in batch and "--stats" not in batch
    assert diff.startswith("qwenchat diff OLD NEW") and "--demo" not in diff
    assert proc.stdout.strip().splitlines()[-1] == "[]"


# -- subcommands and the typed options ------------------------------------------------------------------
@pytest.mark.parametrize(
    "argv, line",
    [
        (["--batch", "p.txt", "--out", "r.jsonl"], "--batch is now a command: qwenchat batch PROMPTS"),
        (["--diff", "a.jsonl", "b.jsonl"], "--diff is now a command: qwenchat diff OLD NEW"),
        (["--demo", "--seeds", "1,2"], "--seeds belongs to `qwenchat batch`"),
        (["--grid", "top_k=1,2", "--demo"], "--grid belongs to `qwenchat batch`"),
        (["--vars", "v.csv"], "--vars belongs to `qwenchat batch`"),
        (["--demo", "batch", "p.txt"], "batch comes first, before any option: qwenchat batch PROMPTS"),
        (["batch", "p.txt", "--resume"], "--resume reopens a chat; a batch resumes from its --out file"),
    ],
)
def test_old_spellings_are_one_line_naming_the_command(tmp_path, argv, line):
    run = Run(tmp_path, "hi\n")
    assert run(*argv) == 2
    assert run.err == f"error: {run.err.removeprefix('error: ')}" and line in run.err
    assert run.err.count("\n") == 1 and run.factory_calls == [] and run.out == ""


def test_the_options_defaults_are_the_parsers():
    from qwenchat.cli.options import BatchOptions, ChatOptions, DiffOptions, ReportOptions
    from qwenchat.cli.parser import parse

    assert parse([]) == ChatOptions()
    assert parse(["batch", "p.txt"]) == BatchOptions(prompts="p.txt")
    assert parse(["diff", "a", "b"]) == DiffOptions(old="a", new="b")
    assert parse(["report", "r.jsonl"]) == ReportOptions(results="r.jsonl")


def test_every_option_lands_in_a_typed_object():
    """No flag is parsed and then lost: each subcommand's destinations are its options object's fields."""
    import argparse
    import dataclasses

    from qwenchat.cli.options import BatchOptions, ChatOptions, DiffOptions, ReportOptions
    from qwenchat.cli.parser import build_parser, subparsers

    def leaves(cls) -> set[str]:
        names = set()
        for f in dataclasses.fields(cls):
            default = f.default_factory() if f.default_factory is not dataclasses.MISSING else None
            names |= leaves(type(default)) if dataclasses.is_dataclass(default) else {f.name}
        return names

    def dests(parser) -> set[str]:
        return {
            a.dest
            for a in parser._actions
            if a.help != argparse.SUPPRESS and not isinstance(a, argparse._SubParsersAction)
        } - {"help", "version"}

    chat = build_parser()
    assert dests(chat) == leaves(ChatOptions)
    assert dests(subparsers(chat)["batch"]) == leaves(BatchOptions)
    assert dests(subparsers(chat)["diff"]) == leaves(DiffOptions)
    assert dests(subparsers(chat)["report"]) == leaves(ReportOptions)


def test_options_parse_into_typed_objects():
    from qwenchat.cli.options import BatchOptions
    from qwenchat.cli.parser import parse

    chat = parse(
        ["-c", "X", "--adapter", "a", "--adapter", "b", "--lookup", "4", "--read", "f", "--seed", "7"]
    )
    assert chat.model.checkpoint_path == "X" and chat.model.adapter == ("a", "b")
    assert chat.model.prompt_lookup_num_tokens == 4 and chat.read == ("f",) and chat.generation.seed == 7
    batch = parse(["batch", "p.txt", "--demo", "--out", "r.jsonl", "--grid", "top_k=1,2", "seed=1,2"])
    assert isinstance(batch, BatchOptions) and batch.model.demo and batch.out == "r.jsonl"
    assert batch.grid == ("top_k=1,2", "seed=1,2")


def test_model_options_for_another_spec():
    from qwenchat.cli.options import ModelOptions

    options = ModelOptions(demo=True, adapter=("lora",), dtype="float32")
    assert options.for_spec("./m.gguf").checkpoint_path == "./m.gguf"
    assert not options.for_spec("./m.gguf").demo and options.for_spec("x").adapter == ()
    assert options.for_spec("demo").demo and options.for_spec("demo").checkpoint_path is None
    assert options.for_spec("x").dtype == "float32"  # everything else carries over
    templated = ModelOptions(demo=True, chat_template="t.jinja", no_template=False)
    assert templated.for_spec("x").chat_template is None  # a template was given for the model it came with
    assert not ModelOptions(no_template=True).for_spec("x").no_template


def test_template_options_are_checked_before_any_model_loads(tmp_path, out):
    from qwenchat.cli.engine import make_engine
    from qwenchat.cli.options import ModelOptions

    bad = tmp_path / "t.jinja"
    bad.write_text("{% if %}")
    # The model does not exist either: the template's line shows that the file was read first.
    assert make_engine(ModelOptions(checkpoint_path="/no/such/model", chat_template=str(bad)), out) is None
    assert out.buf.getvalue().startswith(f"error: --chat-template {bad}: line 1: ")
    with_endpoint = ModelOptions(endpoint="http://127.0.0.1:9/v1", no_template=True)
    assert make_engine(with_endpoint, out) is None
    assert "--no-template needs an in-process engine" in out.buf.getvalue()
    assert len([line for line in out.buf.getvalue().splitlines() if line]) == 2


def test_batch_through_the_cli_with_the_fake_engine(tmp_path):
    """The batch path, from the command line's typed options to records on disk, without a model."""
    import json

    prompts, out = tmp_path / "p.txt", tmp_path / "r.jsonl"
    prompts.write_text("one\ntwo\n")
    run = Run(tmp_path, answers=["a1", "a2", "b1", "b2"])
    argv = ["batch", str(prompts), "-c", "fake", "--out", str(out), "--seeds", "1,2", "--system", "Be brief."]
    assert run(*argv) == 0, run.err
    [options] = run.factory_calls
    assert options.checkpoint_path == "fake"
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in records] == ["p1/s1", "p1/s2", "p2/s1", "p2/s2"]
    assert [r["answer"] for r in records] == ["a1", "a2", "b1", "b2"]
    assert run.engine.requests[0].messages[0] == {"role": "system", "content": "Be brief."}
    assert "4 records written" in run.err and run.out == ""
    assert not (tmp_path / "data" / "sessions").exists()  # a batch never autosaves


def test_diff_through_the_cli(tmp_path):
    import json

    def write(path, answers):
        rows = [
            {"key": f"p{i}/s1#0", "id": f"p{i}/s1", "prompt_index": i, "seed": 1, "answer": a}
            for i, a in enumerate(answers)
        ]
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))

    a, b, c = tmp_path / "a.jsonl", tmp_path / "b.jsonl", tmp_path / "c.jsonl"
    write(a, ["red", "blue"])
    write(b, ["red", "blue"])
    write(c, ["red", "green"])
    run = Run(tmp_path)
    assert run("diff", str(a), str(b)) == 0, run.err
    assert "2 identical, 0 changed" in run.out
    run = Run(tmp_path)
    assert run("diff", str(a), str(c), "--no-color") == 1
    assert "1 identical, 1 changed" in run.out and run.factory_calls == []
    run = Run(tmp_path)
    assert run("diff", str(a), str(tmp_path / "none.jsonl")) == 2 and "no such file" in run.err


# -- pipe runs: answers on stdout, the rest on stderr, a failure in the exit status --------------------
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
