"""Crashes on `~user` paths, the unchecked [chat] table, and commands that surprise.

The real program in a pipe or a pseudo-terminal against the scripted server; the two cases that need an
in-process engine and a real chat template run a tiny random-weight Qwen2 saved with the demo model's
tokenizer (`-c DIR`), which loads in seconds."""

from __future__ import annotations

import re
import stat
from pathlib import Path

import pytest

from tests.support.defects_harness import Pty, answers, echo, run_pipe, scripted_server, write_config

server = pytest.fixture(scripted_server)

NO_USER = "~nosuchuser17q"  # a home directory that cannot be looked up


def piped(server, stdin: str, *args: str, **kw):
    return run_pipe(stdin, "--endpoint", server.url, *args, **kw)


def shown(proc) -> str:
    return proc.stdout + proc.stderr


def no_crash(proc) -> None:
    out = shown(proc)
    assert "Traceback" not in out and "internal error" not in out and "RuntimeError" not in out, out


def last_stop(server) -> list[str]:
    """The stop strings of the last chat request (the OpenAI field; absent means none)."""
    return server.requests[-1].get("stop") or []


# -- ~user paths ----------------------------------------------------------------------------------
def test_checkpoint_path_with_unknown_user_is_one_line():
    proc = run_pipe("", "-c", f"{NO_USER}/model")
    no_crash(proc)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("error:"), proc.stderr


UNKNOWN_USER_COMMANDS = [
    f":save {NO_USER}/chat.json",
    f":load {NO_USER}/chat.json",
    f":export {NO_USER}/chat.md",
    ":SAVE ~0",  # found by the property test (tests/commands/test_dispatch_property.py)
    ":EXPORT ~0",
]


def test_unknown_user_path_in_a_command_is_a_plain_error(server):
    # One run for all of them (each process start costs seconds); a `:seed N` after each shows the
    # session went on.
    script = "".join(f"{c}\n:seed {71 + i}\n" for i, c in enumerate(UNKNOWN_USER_COMMANDS))
    proc = piped(server, "hi\n" + script)
    out = shown(proc)
    bad = [line for line in out.splitlines() if "internal error" in line or "RuntimeError" in line]
    assert not bad and "Traceback" not in out, bad or out
    for i, command in enumerate(UNKNOWN_USER_COMMANDS):
        assert re.search(rf"seed\b.*\b{71 + i}\b", out), f"the session did not go on after {command}"
        typed = command.split()[1]
        # A one-line error naming the path, or (as a shell does with an unknown ~user) the literal name.
        named = any(typed in line and "error" in line for line in out.splitlines())
        assert named or Path(typed).exists(), f"{command}: {out}"


# -- the [chat] table of the config file ---------------------------------------------------------
@pytest.mark.parametrize("table", ['[chat]\nstats = "off"\n', "chat = 1\n", '[chat]\nsystem = ["a"]\n'])
def test_bad_chat_table_is_refused_in_one_line(server, table):
    write_config(table)
    proc = piped(server, "hi\n")
    no_crash(proc)
    assert proc.returncode == 2, shown(proc)
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error:") and "config.toml" in last, proc.stderr
    assert not server.requests, "nothing may be sent with a config file that was refused"


def test_chat_table_stats_true_turns_stats_on(server):
    """Sanity (passes today): a well-typed [chat] value is honoured."""
    write_config("[chat]\nstats = true\n")
    server.script = answers("Fine.", usage=(400, 0, 3))
    proc = piped(server, "hi\n")
    assert proc.returncode == 0, proc.stderr
    assert "tok/s" in shown(proc)


def test_chat_table_think_hide_is_honoured(server):
    write_config('[chat]\nthink = "hide"\n')
    server.script = answers("<think>a secret plan</think>The visible answer.")
    t = Pty("--endpoint", server.url)
    try:
        out = t.command("hi")
        assert t.quit() == 0
    finally:
        t.kill()
    assert "The visible answer." in out, out
    assert "thought for" not in out and "secret plan" not in out, out


# -- no argument shows the state; :raw means raw --------------------------------------------------
def state_lines(out: str, word: str) -> list[str]:
    return [line for line in out.splitlines() if word in line.lower()]


@pytest.mark.parametrize(("command", "word"), [(":stats", "stats"), (":markdown", "markdown")])
def test_no_argument_shows_the_state_without_toggling(server, command, word):
    proc = piped(server, f"{command}\n{command}\n")
    lines = state_lines(shown(proc), word)
    assert len(lines) == 2 and lines[0] == lines[1], lines


def test_raw_always_means_raw(server):
    proc = piped(server, ":raw\n:raw\n:markdown\n")
    lines = state_lines(shown(proc), "markdown")
    assert len(lines) == 3 and all("off" in line for line in lines), lines


# -- :conf values are Python literals; clearing a setting -----------------------------------------
def test_conf_list_literal_keeps_its_quotes(server):
    proc = piped(server, ":conf stop_strings=['END']\nhi\n")
    assert proc.returncode == 0, proc.stderr
    assert last_stop(server) == ["END"]


def test_conf_bare_word_stop_string(server):
    """Sanity (passes today)."""
    piped(server, ":conf stop_strings=END\nhi\n")
    assert last_stop(server) == ["END"]


def test_reset_conf_key_clears_one_setting(server):
    proc = piped(server, ":conf stop_strings=['END'] temperature=0.3\n:reset-conf stop_strings\nhi\n")
    no_crash(proc)
    assert server.requests, shown(proc)
    assert last_stop(server) == [], "the stop string must be gone"
    assert server.requests[-1].get("temperature") == 0.3, "the other setting must stay"


def test_conf_empty_value_clears_or_points_at_reset_conf(server):
    proc = piped(server, ":conf stop_strings=['END']\n:conf stop_strings=\nhi\n")
    if last_stop(server):  # refused: then it says how to clear the setting
        assert ":reset-conf stop_strings" in shown(proc), shown(proc)


def template_default_system(tiny_dir: Path) -> str:
    """The system prompt the chat template inserts when the conversation has none."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_dir)
    prompt = tok.apply_chat_template([{"role": "user", "content": "x"}], tokenize=False)
    m = re.search(r"<\|im_start\|>system\n(.*?)<\|im_end\|>", prompt, re.DOTALL)
    assert m, prompt
    return m.group(1)


def test_in_process_engine_template_default_and_empty_stop_strings(tiny_dir, tiny_process):
    """One run of the in-process engine (slow to start) for two defects:
    `:system -` must say the template inserts its own default system prompt (and which);
    `:conf stop_strings=[]` means no stop strings: the next turn works and is kept."""
    proc = run_pipe(
        ":system -\n:conf stop_strings=[]\nhi\n:undo\n", "-c", str(tiny_dir), "--max-new-tokens", "4"
    )
    no_crash(proc)
    out = shown(proc)
    default = template_default_system(tiny_dir)
    problems = []
    if default not in out:
        problems.append(f"`:system -` does not mention the template's default {default!r}")
    if "Stop string" in out or "removed the last exchange" not in out:
        problems.append("`:conf stop_strings=[]` broke the next turn")
    assert not problems, f"{problems}:\n{out}"


# -- the banner of --resume -----------------------------------------------------------------------
def test_resume_banner_shows_the_resumed_seed(server):
    server.script = echo
    proc = piped(server, ":seed 42\nhi\n")
    assert proc.returncode == 0, proc.stderr
    t = Pty("--endpoint", server.url, "--resume")
    try:
        t.wait_prompt()
        banner = t.text()
        seed_now = t.command(":seed")
        assert t.quit() == 0
    finally:
        t.kill()
    banner_seed = re.search(r"\bseed (\d+)", banner)
    current = re.search(r"\bseed\b\D*(\d+)", seed_now)
    assert banner_seed and current, (banner, seed_now)
    assert current.group(1) == "42"
    assert banner_seed.group(1) == current.group(1), banner


# -- :edit ----------------------------------------------------------------------------------------
def test_edit_shows_the_edited_message(server, tmp_path):
    editor = tmp_path / "editor.sh"
    editor.write_text("#!/bin/sh\nprintf 'My edited question 4711.\\n' > \"$1\"\n")
    editor.chmod(editor.stat().st_mode | stat.S_IEXEC)
    server.script = answers("An answer.")
    proc = piped(server, "My first question.\n:edit\n", env={"EDITOR": str(editor), "VISUAL": ""})
    no_crash(proc)
    assert server.requests[-1]["messages"][-1]["content"] == "My edited question 4711."
    assert "My edited question 4711." in shown(proc), shown(proc)


# -- :stats ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(("prompt", "cached", "rate_shown"), [(40, 39, False), (400, 0, True)])
def test_stats_prefill_rate_only_with_enough_tokens(server, prompt, cached, rate_shown):
    server.script = answers("Fine.", usage=(prompt, cached, 3))
    proc = piped(server, ":stats on\nhi\n")
    out = shown(proc)
    assert "decode" in out, out
    assert bool(re.search(r"prefill [\d.]+ tok/s", out)) == rate_shown, out


# -- :save and :export: no new directories, no silent overwrite -----------------------------------
def test_save_into_a_missing_directory_is_refused(server):
    proc = piped(server, "hi\n:save missing-dir/sub/chat.json\n")
    no_crash(proc)
    assert not Path("missing-dir").exists()
    assert "error" in shown(proc), shown(proc)


@pytest.mark.parametrize(("cmd", "name"), [("save", "chat.json"), ("export", "chat.md")])
def test_save_and_export_refuse_to_overwrite_unless_forced(server, cmd, name):
    server.script = echo
    proc = piped(server, f"First turn.\n:{cmd} {name}\nSecond turn.\n:{cmd} {name}\n")
    no_crash(proc)
    assert "First turn." in Path(name).read_text()
    assert "Second turn." not in Path(name).read_text(), "an existing file was overwritten"
    assert "error" in shown(proc), shown(proc)
    proc = piped(server, f"First turn.\nSecond turn.\n:{cmd}! {name}\n")
    no_crash(proc)
    assert "Second turn." in Path(name).read_text(), shown(proc)


# -- :h command -----------------------------------------------------------------------------------
HELP_EXAMPLES = {
    "conf": r":conf [a-z_]+=\S+",
    "seed": r":seed \d+",
    "save": r":save \S+\.json",
    "system": r":system [^\s\[]",
}


def test_help_for_a_command_shows_syntax_and_an_example(server):
    proc = piped(server, "".join(f":h {name}\n" for name in HELP_EXAMPLES))
    out = shown(proc)
    missing = [name for name, example in HELP_EXAMPLES.items() if not re.search(example, out)]
    assert not missing, f"no example for {missing} in:\n{out}"
