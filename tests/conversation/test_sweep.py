"""A run killed mid-autosave leaves the atomic write's temporary file in the sessions folder: the next start
removes it (unless a live process is writing that session), and it is never listed as a session."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from qwenchat.conversation.model import Conversation, Message
from qwenchat.conversation.store import SessionStore

# A child that claims a session and starts its autosave, but never gets to the rename: what kill -9 at that
# moment leaves on disk.
CHILD = r"""
import os, sys, time
from qwenchat.conversation.model import Conversation, Message
from qwenchat.conversation.store import SessionStore
store = SessionStore(sys.argv[1])
assert store.claim(sys.argv[2]) is True
def stuck(*args):
    print("writing", flush=True)
    time.sleep(600)
os.replace = stuck
c = Conversation()
c.messages.append(Message("user", "hello"))
store.autosave(sys.argv[2], c, model="m", settings_overrides={}, seed=1)
"""


def temps(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.name.endswith(".tmp"))


def test_a_killed_autosave_leaves_a_temp_file_that_the_next_start_removes(tmp_path):
    root = tmp_path / "sessions"
    sid = SessionStore.new_id()
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(root), sid], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "writing"
        left = temps(root)
        assert len(left) == 1 and left[0].name.startswith(f".{sid}.json.")
        # While the writer lives, its temp file is a write in progress: kept.
        assert SessionStore(root).sweep() == [] and temps(root) == left
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
    store = SessionStore(root)
    assert store.list() == [] and store.skipped == []  # never listed, not even as unreadable
    assert store.sweep() == left and temps(root) == []
    assert not (root / f"{sid}.lock").exists() or store.claim(sid) is True


def test_sweep_keeps_sessions_and_files_it_did_not_write(tmp_path):
    root = tmp_path / "sessions"
    store = SessionStore(root)
    sid = store.new_id()
    c = Conversation()
    c.messages.append(Message("user", "kept"))
    store.autosave(sid, c, model="m", settings_overrides={}, seed=1)
    others = [root / "notes.tmp", root / ".x.json.tmp", root / f".{sid}.json"]
    for p in others:
        p.write_text("mine")
    stale = root / f".{sid}.json.abcd1234.tmp"
    stale.write_text('{"half": ')
    old = time.time() - 3600
    os.utime(stale, (old, old))
    assert store.sweep() == [stale]
    assert [s.id for s in store.list()] == [sid] and all(p.exists() for p in others)


def test_sweep_skips_the_session_this_process_holds(tmp_path):
    root = tmp_path / "sessions"
    store = SessionStore(root)
    sid = store.new_id()
    assert store.claim(sid) is True
    mine = root / f".{sid}.json.abcd1234.tmp"
    mine.write_text("")
    assert store.sweep() == [] and mine.exists()
    store.release()
    assert store.sweep() == [mine]


def test_sweep_of_a_missing_folder_is_nothing(tmp_path):
    assert SessionStore(tmp_path / "nowhere").sweep() == []


def test_the_chat_start_sweeps_the_sessions_folder(tmp_path):
    from qwenchat.cli.parser import parse
    from qwenchat.cli.startup import read_startup

    root = tmp_path / "data" / "sessions"
    root.mkdir(parents=True)
    stale = root / f".{SessionStore.new_id()}.json.k2j4h6g8.tmp"
    stale.write_text('{"half": ')
    read_startup(parse(["--demo"]), tmp_path / "config.toml", tmp_path / "data")
    assert not stale.exists()
