import base64
import re

from qwenchat.ui.clipboard import SCREEN_CHUNK, osc52, support_note


def test_osc52_exact_bytes():
    assert osc52("hello", tmux=False, screen=False) == "\x1b]52;c;aGVsbG8=\x07"
    seq = osc52("héllo 🌍\n", tmux=False, screen=False)
    body = re.fullmatch(r"\x1b\]52;c;([A-Za-z0-9+/=]*)\x07", seq).group(1)
    assert base64.b64decode(body).decode("utf-8") == "héllo 🌍\n"
    assert osc52("", tmux=False, screen=False) == "\x1b]52;c;\x07"


def test_osc52_tmux_passthrough():
    assert osc52("hello", tmux=True) == "\x1bPtmux;\x1b\x1b]52;c;aGVsbG8=\x07\x1b\\"


def test_osc52_detects_tmux_and_screen_from_env(monkeypatch):
    monkeypatch.delenv("STY", raising=False)
    monkeypatch.setenv("TMUX", "/tmp/tmux-1000/default,123,0")
    assert osc52("hello").startswith("\x1bPtmux;")
    monkeypatch.delenv("TMUX")
    assert osc52("hello") == "\x1b]52;c;aGVsbG8=\x07"
    monkeypatch.setenv("STY", "123.pts-0.host")
    assert osc52("hello") == "\x1bP\x1b]52;c;aGVsbG8=\x07\x1b\\"


def test_osc52_screen_chunks():
    text = "x" * 3000
    out = osc52(text, tmux=False, screen=True)
    chunks = re.findall(r"\x1bP(.*?)\x1b\\", out, flags=re.S)
    assert len(chunks) > 1 and all(len(c.encode()) <= SCREEN_CHUNK < 768 for c in chunks)
    assert "".join(chunks) == osc52(text, tmux=False, screen=False)
    assert "".join(f"\x1bP{c}\x1b\\" for c in chunks) == out


def test_support_notes():
    assert support_note({"TERM": "xterm-256color"}) is None
    assert "tmux" in support_note({"TERM": "tmux-256color", "TMUX": "x"})
    assert "set-clipboard" in support_note({"TERM": "screen", "TMUX": "x"})
    assert "Linux console" in support_note({"TERM": "linux"})
    assert "Apple Terminal" in support_note({"TERM": "xterm-256color", "TERM_PROGRAM": "Apple_Terminal"})
    assert support_note({"TERM": "xterm"}, text="x" * 1000) is None
    assert "100 kB" in support_note({"TERM": "xterm"}, text="x" * 200_000)
    both = support_note({"TERM": "linux", "TMUX": "x"}, text="é" * 100_000)
    assert "Linux" in both and "tmux" in both and "200 kB" in both and "\n" not in both


def test_support_note_reads_environ_by_default(monkeypatch):
    monkeypatch.setenv("TERM", "linux")
    monkeypatch.delenv("TMUX", raising=False)
    assert "Linux console" in support_note()
