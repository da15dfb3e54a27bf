"""Escapes: no byte from a model, a server or a session file reaches the terminal as a control
sequence, in any mode; it is shown visibly instead (text is kept, newlines and tabs stay).

Sixteen payloads x every output path. Each path is one real qwenchat process (pipe or pty) against the
scripted server, answering one payload per turn; the tests then read that turn's bytes. A payload fails when
one of its raw sequences reached the output (`forbidden`, chosen so qwenchat's own sequences never match:
see the sanity tests) or when its text vanished (`keep`, the markers around it).
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.support.cli_harness import (
    PROMPT,
    TRACEBACK,
    ChatServer,
    PtyRun,
    Reply,
    cli_env,
    edit_session,
    make_session,
    raw_reply,
    run_pipe,
    status_reply,
    visible,
)
from tests.support.scripted_server import sse


@dataclass(frozen=True)
class Payload:
    name: str
    raw: str
    forbidden: tuple[str, ...]  # any of these in the output means the sequence reached the terminal raw
    keep: tuple[str, ...] = ()  # printable parts a visible rendering keeps


PAYLOADS = [
    Payload("osc52_clipboard", "\x1b]52;c;UFdORUQtQ0xJUA==\x07", ("\x1b]52;",), ("UFdORUQtQ0xJUA==",)),
    Payload("osc0_title", "\x1b]0;PWNED-TITLE\x07", ("\x1b]0;PWNED", "PWNED-TITLE\x07"), ("PWNED-TITLE",)),
    Payload(
        "osc8_link",
        "\x1b]8;;http://evil.example/osc8\x1b\\click-here\x1b]8;;\x1b\\",
        ("\x1b]8;;http://evil.example/osc8",),
        ("click-here", "evil.example/osc8"),
    ),
    Payload("erase_screen", "\x1b[2JWIPED", ("\x1b[2JWIPED",), ("WIPED",)),
    Payload("cursor_position", "\x1b[31;7HMOVED-TO", ("\x1b[31;7H",), ("MOVED-TO",)),
    Payload("cursor_up", "\x1b[9AMOVED-UP", ("\x1b[9AMOVED",), ("MOVED-UP",)),
    Payload("alt_screen", "\x1b[?1049hALTSCREEN", ("\x1b[?1049h",), ("ALTSCREEN",)),
    Payload("dcs", "\x1bP$qm\x1b\\DCS-END", ("\x1bP$q",), ("DCS-END",)),
    Payload("c1_csi", "\x9b2JC1-CSI", ("\x9b",), ("C1-CSI",)),
    Payload("c1_osc", "\x9d0;C1-TITLE\x07", ("\x9d",), ("C1-TITLE",)),
    Payload("bel", "ding\x07dong", ("ding\x07",), ("ding", "dong")),
    Payload("backspace", "abc\x08\x08\x08XYZ", ("abc\x08",), ("abc", "XYZ")),
    Payload("carriage_return", "safe\rrm -rf ~", ("\rrm -rf",), ("safe", "rm -rf")),
    Payload("cursor_report", "\x1b[6nDSR-ASK", ("\x1b[6nDSR",), ("DSR-ASK",)),
    Payload("window_report", "\x1b[21tWINOPS", ("\x1b[21t",), ("WINOPS",)),
    Payload("full_reset", "\x1bcRESET-ALL", ("\x1bcRESET",), ("RESET-ALL",)),
]
ALL_FORBIDDEN = [f for p in PAYLOADS for f in p.forbidden]
# A harmless answer every process gets first: it proves the harness reads that mode right (and that no
# forbidden pattern matches qwenchat's own output), so a failing payload is qwenchat's, not the test's.
SANITY = "L99q plain ümlaut ✓ R99q\n\n```\nNL1\tTAB\nNL2\n```\n"


def marked(i: int, tag: str, body: str) -> tuple[str, str, str]:
    return f"L{i:02d}{tag}", body, f"R{i:02d}{tag}"


def answer(i: int, tag: str, raw: str, shape: str = "plain") -> str:
    left, _, right = marked(i, tag, raw)
    if shape == "inline":
        return f"{left} `{raw}` {right}"
    if shape in ("fence", "text-fence"):
        lang = "text" if shape == "text-fence" else ""
        return f"{left}\n\n```{lang}\n{raw}\n```\n\n{right}"
    if shape == "think":
        return f"<think>{left} {raw} {right}</think>\n\nDONE{i:02d}{tag}"
    return f"{left} {raw} {right}"


@dataclass
class Outcome:
    """What one qwenchat process showed: a segment of output per (mode, payload name)."""

    segments: dict[tuple[str, str], str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # turns that never completed, exit status, tracebacks


def problems(segment: str | None, p: Payload, left: str, right: str, outcome: Outcome) -> list[str]:
    if segment is None:
        return [f"no output for this case: {outcome.notes}"]
    found = [f"raw {f!r} reached the output" for f in p.forbidden if f in segment]
    shown = visible(segment)
    found += [f"{k!r} is not shown" for k in (left, right, *p.keep) if k not in shown]
    return found


# -- running one process per path ------------------------------------------------------------------
def pty_process(
    home: Path,
    args: list[str],
    turns: list[tuple[tuple[str, str], str, Reply | None, str]],
    *,
    env_extra: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> Outcome:
    """One pty process; each turn is (key, typed line, the server's reply or None, text that ends it)."""
    outcome = Outcome()
    replies = [r for _, _, r, _ in turns if r is not None]
    with (
        ChatServer(*replies) as server,
        PtyRun(["--endpoint", server.url, *args], cli_env(home, **(env_extra or {})), cwd=cwd) as t,
    ):
        try:
            t.wait_for(PROMPT, timeout=30)
        except AssertionError as exc:
            outcome.notes.append(f"no prompt: {exc}")
            return outcome
        outcome.segments[("start", "")] = t.out.decode("utf-8", "surrogateescape")
        failures = 0
        for key, line, _, until in turns:
            start = len(t.out)
            try:
                t.turn(line, until, timeout=8)
            except AssertionError as exc:
                outcome.notes.append(f"{key}: {str(exc)[:300]}")
                failures += 1
                if failures >= 2 or not t.alive():
                    break
            outcome.segments[key] = t.out[start:].decode("utf-8", "surrogateescape")
        t.send(b"\x04")
        rc = t.finish(10)
        if rc != 0:
            outcome.notes.append(f"exit status {rc}")
        if TRACEBACK.encode() in t.out:
            outcome.notes.append("a traceback was printed")
    return outcome


def answer_turns(mode: str, tag: str, shape: str) -> list[tuple[tuple[str, str], str, Reply, str]]:
    turns = []
    for i, p in enumerate(PAYLOADS):
        end = f"DONE{i:02d}{tag}" if shape == "think" else f"R{i:02d}{tag}"
        turns.append(((mode, p.name), f"payload {i} {shape}", answer(i, tag, p.raw, shape), end))
    return turns


def sanity_turn(mode: str) -> tuple[tuple[str, str], str, Reply, str]:
    return ((mode, "sanity"), "a harmless question", SANITY, "NL2")


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("escapes")


def _tty_flags(mode: str) -> tuple[list[str], dict[str, str]]:
    return {
        "no-markdown": (["--no-markdown"], {}),
        "no-color": (["--no-color"], {}),
        "NO_COLOR": ([], {"NO_COLOR": "1"}),
    }[mode]


@pytest.fixture(scope="module")
def tty_flag_runs(home) -> dict[str, Outcome]:
    """--no-markdown, --no-color and NO_COLOR=1 in a terminal: one process each."""
    runs = {}
    for mode, tag in (("no-markdown", "a"), ("no-color", "b"), ("NO_COLOR", "c")):
        args, env = _tty_flags(mode)
        turns = [sanity_turn(mode), *answer_turns(mode, tag, "plain")]
        runs[mode] = pty_process(home / mode, args, turns, env_extra=env)
    return runs


MD_SHAPES = (("markdown", "m", "plain"), ("inline-code", "i", "inline"), ("fence", "f", "fence"))
MD_SHAPES += (("text-fence", "t", "text-fence"),)
LINK = "See [https://safe.example/](http://evil.example/x) LNKq"


@pytest.fixture(scope="module")
def markdown_run(home) -> Outcome:
    """Markdown answers in a terminal (paragraph, inline code, fences), a link, then :his of them all."""
    turns = [sanity_turn("markdown")]
    for mode, tag, shape in MD_SHAPES:
        turns += answer_turns(mode, tag, shape)
    turns.append((("link", "link"), "a link", LINK, "LNKq"))
    turns.append((("tty-his", "all"), ":his", None, "LNKq"))
    return pty_process(home / "markdown", [], turns)


@pytest.fixture(scope="module")
def think_run(home) -> Outcome:
    turns = [sanity_turn("think-show"), *answer_turns("think-show", "k", "think")]
    return pty_process(home / "think", ["--think", "show"], turns)


@pytest.fixture(scope="module")
def crafted_runs(home) -> Outcome:
    """A session file whose answers carry the payloads: --resume of it then :his, and :load of a copy
    then :his, in one process."""
    base = home / "crafted"
    with ChatServer() as server:
        path = make_session(base, server, [f"question {i}" for i in range(len(PAYLOADS))])

    def put_payloads(data: dict) -> None:
        answers = [m for m in data["conversation"]["messages"] if m["role"] == "assistant"]
        for i, (m, p) in enumerate(zip(answers, PAYLOADS, strict=True)):
            m["content"] = answer(i, "s", p.raw)

    edit_session(path, put_payloads)
    cwd = base / "cwd"
    cwd.mkdir()
    shutil.copy(path, cwd / "crafted.json")
    session_id = json.loads(path.read_text())["id"]
    turns = [
        (("resume-his", "all"), ":his", None, f"R{len(PAYLOADS) - 1:02d}s"),
        (("load", "all"), ":load crafted.json", None, "loaded"),
        (("load-his", "all"), ":his", None, f"R{len(PAYLOADS) - 1:02d}s"),
    ]
    return pty_process(base, ["--resume", session_id], turns, cwd=cwd)


def error_replies(kind: str, i: int, raw: str) -> Reply:
    left, _, right = marked(i, kind[0], raw)
    text = f"{left} {raw} {right}"
    if kind == "http-500":
        return status_reply(500, json.dumps({"error": {"message": text}}).encode())
    if kind == "error-event":
        return raw_reply(sse({"error": {"message": text}}))
    return raw_reply(b"data: " + text.encode() + b"\n\n")  # non-json


ERROR_KINDS = ("http-500", "error-event", "non-json")


@pytest.fixture(scope="module")
def server_error_tty(home) -> Outcome:
    turns = [sanity_turn("server-tty")]
    for kind in ERROR_KINDS:
        for i, p in enumerate(PAYLOADS):
            turns.append(
                (
                    (f"{kind}-tty", p.name),
                    f"case {ERROR_KINDS.index(kind)}-{i}",
                    error_replies(kind, i, p.raw),
                    "error",
                )
            )
    return pty_process(home / "errors-tty", [], turns)


@pytest.fixture(scope="module")
def server_error_pipe(home) -> Outcome:
    """The same errors in pipe mode: one process, stdout and stderr in one stream, cut at the markers."""
    replies = [SANITY] + [error_replies(k, i, p.raw) for k in ERROR_KINDS for i, p in enumerate(PAYLOADS)]
    with ChatServer(*replies) as server:
        lines = [f"turn {n}" for n in range(len(replies))]
        run = run_pipe(["--endpoint", server.url], lines, cli_env(home / "errors-pipe"), merged=True)
    text = run.stdout
    outcome = Outcome(notes=[f"exit status {run.rc}"] if run.rc else [])
    outcome.segments[("server-pipe", "sanity")] = text[: _find(text, "NL2", 0) + 3]
    starts = [(k, p.name, text.find(f"L{i:02d}{k[0]}")) for k in ERROR_KINDS for i, p in enumerate(PAYLOADS)]
    cuts = sorted(pos for _, _, pos in starts if pos >= 0) + [len(text)]
    for kind, name, pos in starts:
        if pos >= 0:
            outcome.segments[(f"{kind}-pipe", name)] = text[pos : min(c for c in cuts if c > pos)]
    return outcome


def _find(text: str, needle: str, start: int) -> int:
    pos = text.find(needle, start)
    return pos if pos >= 0 else len(text)


@pytest.fixture(scope="module")
def pipe_run(home) -> Outcome:
    """Pipe mode: the answers (stdout and stderr), then :his, then the :export file."""
    base = home / "pipe"
    cwd = base / "cwd"
    cwd.mkdir(parents=True)
    replies = [SANITY] + [answer(i, "p", p.raw) for i, p in enumerate(PAYLOADS)]
    lines = [f"turn {n}" for n in range(len(replies))] + [":system", ":his", ":export out.md"]
    with ChatServer(*replies) as server:
        run = run_pipe(["--endpoint", server.url, "--system", "SYS-MARK"], lines, cli_env(base), cwd=cwd)
    # stdout holds the answers only; the notices and the output of :system and :his go to stderr
    out, err = run.stdout, run.stderr
    his_at = _find(err, "SYS-MARK", 0)
    outcome = Outcome(notes=[f"exit status {run.rc}"] if run.rc else [])
    if TRACEBACK in run.both:
        outcome.notes.append("a traceback was printed")
    outcome.segments[("pipe", "sanity")] = out[: _find(out, "NL2", 0) + 3] + err[:his_at]
    exported = cwd / "out.md"
    # bytes, not read_text: universal newlines would turn a raw \r into \n and hide it
    export_text = exported.read_bytes().decode("utf-8", "surrogateescape") if exported.exists() else None
    for p in PAYLOADS:
        outcome.segments[("pipe", p.name)] = out + err[:his_at]
        outcome.segments[("pipe-his", p.name)] = err[his_at:]
        if export_text is not None:
            outcome.segments[("export", p.name)] = export_text
    return outcome


@pytest.fixture(scope="module")
def model_id_run(home) -> Outcome:
    """The served model's id (banner and answer header) carries all sixteen payloads."""
    model = "M " + " ".join(answer(i, "d", p.raw) for i, p in enumerate(PAYLOADS))
    with (
        ChatServer(SANITY, models=[model]) as server,
        PtyRun(["--endpoint", server.url], cli_env(home / "model-id")) as t,
    ):
        outcome = Outcome()
        try:
            t.wait_for(PROMPT, timeout=30)
            t.turn("hello", "NL2", timeout=8)
        except AssertionError as exc:
            outcome.notes.append(str(exc)[:300])
        t.send(b"\x04")
        t.finish(10)
        text = t.out.decode("utf-8", "surrogateescape")
    # The id may be wrapped on screen: take the line breaks out before looking for the markers.
    unwrapped = text.replace("\r\n", "")
    for p in PAYLOADS:
        outcome.segments[("model-id", p.name)] = unwrapped
    return outcome


# -- the matrix --------------------------------------------------------------------------------------
RUNS: dict[str, tuple[str, Callable[[int], str]]] = {
    # mode: (fixture, marker tag for payload i)
    "pipe": ("pipe_run", lambda i: "p"),
    "pipe-his": ("pipe_run", lambda i: "p"),
    "export": ("pipe_run", lambda i: "p"),
    "no-markdown": ("tty_flag_runs", lambda i: "a"),
    "no-color": ("tty_flag_runs", lambda i: "b"),
    "NO_COLOR": ("tty_flag_runs", lambda i: "c"),
    "markdown": ("markdown_run", lambda i: "m"),
    "inline-code": ("markdown_run", lambda i: "i"),
    "fence": ("markdown_run", lambda i: "f"),
    "text-fence": ("markdown_run", lambda i: "t"),
    "think-show": ("think_run", lambda i: "k"),
    "resume-his": ("crafted_runs", lambda i: "s"),
    "load-his": ("crafted_runs", lambda i: "s"),
    "model-id": ("model_id_run", lambda i: "d"),
    **{f"{k}-{w}": (f"server_error_{w}", lambda i, k=k: k[0]) for k in ERROR_KINDS for w in ("tty", "pipe")},
}
HIS_ALL = {"resume-his", "load-his"}  # one :his shows every payload: the same segment for each


def _outcome(request, mode: str) -> Outcome:
    fixture, _ = RUNS[mode]
    got = request.getfixturevalue(fixture)
    return got[mode] if isinstance(got, dict) else got


@pytest.mark.parametrize("mode", list(RUNS))
@pytest.mark.parametrize("payload", PAYLOADS, ids=[p.name for p in PAYLOADS])
def test_payload_is_shown_not_obeyed(request, mode: str, payload: Payload) -> None:
    outcome = _outcome(request, mode)
    i = PAYLOADS.index(payload)
    tag = RUNS[mode][1](i)
    key = (mode, "all") if mode in HIS_ALL else (mode, payload.name)
    segment = outcome.segments.get(key)
    left, _, right = marked(i, tag, payload.raw)
    found = problems(segment, payload, left, right, outcome)
    assert not found, f"{mode}/{payload.name}: {found}"


@pytest.mark.parametrize("mode", ["tty-his"])
@pytest.mark.parametrize("payload", PAYLOADS, ids=[p.name for p in PAYLOADS])
def test_history_of_markdown_answers(markdown_run, mode: str, payload: Payload) -> None:
    segment = markdown_run.segments.get(("tty-his", "all"))
    i = PAYLOADS.index(payload)
    for tag in ("m", "i", "f", "t"):
        left, _, right = marked(i, tag, payload.raw)
        found = problems(segment, payload, left, right, markdown_run)
        assert not found, f"{mode}/{payload.name}/{tag}: {found}"


def test_markdown_link_shows_its_real_target(markdown_run) -> None:
    segment = markdown_run.segments.get(("link", "link"))
    assert segment is not None, markdown_run.notes
    assert "evil.example/x" in visible(segment), "the link's real target is hidden (OSC 8)"


SANITY_RUNS = {
    "pipe": "pipe_run",
    "no-markdown": "tty_flag_runs",
    "no-color": "tty_flag_runs",
    "NO_COLOR": "tty_flag_runs",
    "markdown": "markdown_run",
    "think-show": "think_run",
    "server-tty": "server_error_tty",
    "server-pipe": "server_error_pipe",
}


@pytest.mark.parametrize("mode", list(SANITY_RUNS))
def test_sanity_harmless_answer_passes_today(request, mode: str) -> None:
    """A harmless answer in each mode: shown whole, newlines and tabs kept, and none of the payloads'
    forbidden patterns in qwenchat's own output (banner, prompt, answer), so they only catch payloads."""
    got = request.getfixturevalue(SANITY_RUNS[mode])
    outcome = got[mode] if isinstance(got, dict) else got
    segment = outcome.segments.get((mode, "sanity"))
    assert segment is not None, outcome.notes
    segment = outcome.segments.get(("start", ""), "") + segment
    assert not [f for f in ALL_FORBIDDEN if f in segment]
    shown = visible(segment)
    assert "L99q" in shown and "R99q" in shown and "ümlaut ✓" in shown
    assert re.search(r"NL1[ \t]+TAB[^\n]*\n(?:[^\n]*\n)*?[^\n]*NL2", shown), shown[-400:]
