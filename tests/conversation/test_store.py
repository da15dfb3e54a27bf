import json
import os
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qwenchat.conversation import file as session_file
from qwenchat.conversation import store
from qwenchat.conversation.file import (
    SessionFile,
    StoreError,
    conversation_to_dict,
    dump_session,
    parse_session,
)
from qwenchat.conversation.model import Conversation
from qwenchat.conversation.store import SessionStore, atomic_write_text, load_file, save_file


def conv(*pairs, system="Be brief.", interrupted_last=False):
    c = Conversation(system=system)
    for u, a in pairs:
        c.add_user(u)
        if a is not None:
            c.add_assistant(a)
    if interrupted_last:
        c.messages[-1].interrupted = True
    return c


def doc(**changes):
    """A valid session document as a dict, with some fields replaced (or removed with ...)."""
    d = json.loads(
        dump_session(
            conv(("hi", "hello")), model="m", settings_overrides={}, seed=1, session_id="20260101-000000-abcd"
        )
    )
    for k, v in changes.items():
        if v is ...:
            d.pop(k)
        else:
            d[k] = v
    return d


def rejects(text, fragment):
    with pytest.raises(StoreError) as info:
        parse_session(text if isinstance(text, str) else json.dumps(text), source="x.json")
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith("x.json: ")
    assert fragment in msg, msg
    return msg


# -- round trips ------------------------------------------------------------------------------------------


def test_round_trip_unicode_interrupted_settings(tmp_path):
    c = conv(
        ("héllo 🌍 你好\nsecond line", "<think>hm</think>ответ ```x```"),
        ("again", "cut"),
        interrupted_last=True,
    )
    overrides = {"temperature": 0.3, "stop_strings": ["a", "b"], "top_k": 5}
    saved = save_file(
        tmp_path / "s.json", c, model="Qwen/Qwen2.5-0.5B-Instruct", settings_overrides=overrides, seed=42
    )
    loaded = load_file(tmp_path / "s.json")
    assert loaded == saved
    assert loaded.conversation == c and loaded.conversation.messages[-1].interrupted
    assert loaded.settings == {"temperature": 0.3, "stop_strings": ["a", "b"], "top_k": 5}
    assert loaded.seed == 42 and loaded.model == "Qwen/Qwen2.5-0.5B-Instruct"
    assert loaded.path == tmp_path / "s.json"
    assert loaded.title == "héllo 🌍 你好"
    # Non-ASCII is stored as itself, readable in an editor.
    assert "你好" in (tmp_path / "s.json").read_text(encoding="utf-8")


def test_dump_parse_keeps_ids_and_times():
    text = dump_session(
        conv(),
        model="m",
        settings_overrides={},
        seed=0,
        session_id="a-b_c.d",
        created="2026-01-02T03:04:05+00:00",
    )
    d = json.loads(text)
    # one version, on the file and on its conversation alike
    assert d["format"] == "qwenchat-session" and d["version"] == session_file.VERSION == 2
    assert d["conversation"]["version"] == session_file.VERSION
    s = parse_session(text)
    assert s.id == "a-b_c.d" and s.created == "2026-01-02T03:04:05+00:00" and s.updated == d["updated"]
    assert s.conversation == conv() and s.title == "(empty)" and s.settings == {}


def test_no_system_prompt_round_trip():
    c = conv(("x", None), system=None)
    s = parse_session(dump_session(c, model="m", settings_overrides={}, seed=0, session_id="x"))
    assert s.conversation.system is None and s.conversation == c


def test_title_is_first_user_line_truncated():
    long = "word " * 40
    s = parse_session(
        json.dumps(doc(conversation=conversation_to_dict(conv(("\n\n  " + long + "\nnext", "a")))))
    )
    assert len(s.title) <= 60 and s.title.endswith("…") and s.title.startswith("word word")
    s = parse_session(json.dumps(doc(conversation=conversation_to_dict(conv(("evil\x1b[2J title", "a"))))))
    assert "\x1b" not in s.title


def test_dump_rejects_bad_id_and_unserialisable():
    with pytest.raises(StoreError, match="not valid"):
        dump_session(conv(), model="m", settings_overrides={}, seed=0, session_id="../etc/passwd")
    with pytest.raises(StoreError, match="cannot save"):
        dump_session(conv(), model="m", settings_overrides={"x": object()}, seed=0, session_id="a")
    with pytest.raises(StoreError, match="cannot save"):
        dump_session(conv(), model="m", settings_overrides={"x": float("nan")}, seed=0, session_id="a")


# -- atomic write -----------------------------------------------------------------------------------------


def test_atomic_write_creates_parents_and_leaves_no_temp(tmp_path):
    target = tmp_path / "a" / "b" / "s.json"
    atomic_write_text(target, "one")
    atomic_write_text(target, "two ✓")
    assert target.read_text(encoding="utf-8") == "two ✓"
    assert os.listdir(target.parent) == ["s.json"]


def test_failed_replace_keeps_old_file_and_removes_temp(tmp_path, monkeypatch):
    target = tmp_path / "s.json"
    target.write_text("old", encoding="utf-8")

    def boom(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(store.os, "replace", boom)
    with pytest.raises(OSError):
        atomic_write_text(target, "new")
    assert target.read_text(encoding="utf-8") == "old"
    assert os.listdir(tmp_path) == ["s.json"]
    with pytest.raises(StoreError) as info:
        save_file(target, conv(("a", "b")), model="m", settings_overrides={}, seed=0)
    assert str(info.value) == f"cannot write {target}: no space left on device"
    assert os.listdir(tmp_path) == ["s.json"] and target.read_text(encoding="utf-8") == "old"


def test_failed_write_midway_removes_temp(tmp_path, monkeypatch):
    target = tmp_path / "s.json"
    target.write_text("old", encoding="utf-8")

    def boom(fd):
        raise KeyboardInterrupt  # Ctrl-C between write and rename

    monkeypatch.setattr(store.os, "fsync", boom)
    with pytest.raises(KeyboardInterrupt):
        atomic_write_text(target, "new")
    assert os.listdir(tmp_path) == ["s.json"] and target.read_text(encoding="utf-8") == "old"


# -- hostile and corrupt input ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text,fragment",
    [
        ('{"format": "qwenchat-session",\n "version": 1,,}', "not valid JSON (line 2, column"),
        ("", "not valid JSON (line 1, column 1"),
        ("[1, 2]", "not a qwenchat session file"),
        ('"just a string"', "not a qwenchat session file"),
        ('{"name": "package.json", "version": "1.0"}', "not a qwenchat session file"),
        ("[" * 100_000 + "]" * 100_000, "not a qwenchat session file"),
        ('{"format": "qwenchat-session", "seed": NaN}', "not valid JSON"),
        ('{"format": "qwenchat-session", "seed": ' + "9" * 5000 + "}", "not valid JSON"),
    ],
)
def test_rejects_bad_json(text, fragment):
    rejects(text, fragment)


def test_files_written_before_the_one_version_still_load():
    """Such a file says 1 on the file and 1 or 2 on its conversation; format-2 fields (a tool result) load."""
    conversation = {
        "version": 2,
        "system": None,
        "messages": [
            {"role": "assistant", "content": "", "tool_calls": [{"id": "c", "name": "f", "arguments": {}}]},
            {"role": "tool", "content": "42", "tool_call_id": "c", "name": "f"},
        ],
    }
    s = parse_session(json.dumps(doc(version=1, conversation=conversation)))
    assert [m.role for m in s.conversation.messages] == ["assistant", "tool"]
    assert s.conversation.messages[1].name == "f"
    v1 = {"version": 1, "system": "s", "messages": [{"role": "user", "content": "hi"}]}
    assert parse_session(json.dumps(doc(version=1, conversation=v1))).conversation.messages[0].content == "hi"


@pytest.mark.parametrize(
    "changes,fragment",
    [
        ({"version": 7}, "written by a newer qwenchat (version 7)"),
        ({"version": "1"}, "'version'"),
        ({"version": True}, "'version'"),
        ({"version": ...}, "'version'"),
        ({"id": 5}, "'id'"),
        ({"id": "../../x"}, "'id'"),
        ({"created": "yesterday"}, "'created'"),
        ({"updated": None}, "'updated'"),
        ({"model": ["m"]}, "'model'"),
        ({"model": "m\x1b[2J"}, "control characters"),
        ({"seed": -1}, "'seed'"),
        ({"seed": 2**32}, "'seed'"),
        ({"seed": 1.5}, "'seed'"),
        ({"seed": False}, "'seed'"),
        ({"settings": []}, "'settings' must be an object"),
        ({"settings": ...}, "'settings' must be an object"),
        ({"settings": {"temperature": "hot"}}, "temperature must be float"),
        ({"settings": {"temperature": -3}}, "temperature must be >= 0"),
        ({"settings": {"top_p": {"a": 1}}}, "'top_p' must be a number"),
        ({"settings": {"output_scores": True}}, "output_scores cannot be changed"),
        ({"settings": {"__class__": 1}}, "unknown setting '__class__'"),
        ({"settings": {"x" * 5000: 1}}, "too long"),
        ({"conversation": None}, "conversation: not a qwenchat conversation"),
        (
            {"conversation": {"version": 1, "messages": [{"role": "system", "content": "x"}]}},
            "conversation: message 1 has role",
        ),
        (
            {
                "conversation": {
                    "version": 1,
                    "messages": [{"role": "user", "content": "x", "interrupted": 1}],
                }
            },
            "'interrupted' must be true or false",
        ),
    ],
)
def test_rejects_bad_fields(changes, fragment):
    rejects(doc(**changes), fragment)


def test_rejects_huge_message_and_system(monkeypatch):
    monkeypatch.setattr(session_file, "MAX_MESSAGE_CHARS", 1000)
    rejects(
        doc(conversation=conversation_to_dict(conv(("x" * 1001, "a")))), "message 1 is over 1,000 characters"
    )
    rejects(doc(conversation=conversation_to_dict(conv(system="s" * 1001))), "system prompt is over")
    parse_session(json.dumps(doc(conversation=conversation_to_dict(conv(("x" * 1000, "a"))))))


def test_rejects_huge_text_before_parsing(monkeypatch):
    monkeypatch.setattr(session_file, "MAX_FILE_BYTES", 100)
    monkeypatch.setattr(session_file.json, "loads", lambda *a, **k: pytest.fail("parsed a huge input"))
    rejects("x" * 101, "too large")


def test_error_messages_are_one_line():
    # A hostile key full of newlines, or a very long one, still gives one short line.
    msg = rejects(doc(settings={"a\nb\nc": 1}), "unknown setting")
    assert len(msg) <= session_file.MAX_ERROR_CHARS
    with pytest.raises(StoreError) as info:
        load_file(Path("/nonexistent\ndir") / ("y" * 1000))
    assert "\n" not in str(info.value) and len(str(info.value)) <= session_file.MAX_ERROR_CHARS


def test_settings_values_come_back_checked():
    s = parse_session(json.dumps(doc(settings={"temperature": 1, "do_sample": True, "top_k": None})))
    assert s.settings == {"temperature": 1.0, "do_sample": True, "top_k": None}
    assert isinstance(s.settings["temperature"], float)


# -- files ------------------------------------------------------------------------------------------------


def test_load_file_errors(tmp_path):
    def msg(path):
        with pytest.raises(StoreError) as info:
            load_file(path)
        assert "\n" not in str(info.value)
        return str(info.value)

    assert msg(tmp_path / "nope.json") == f"no such file: {tmp_path / 'nope.json'}"
    assert msg(tmp_path / "nope" / "deeper.json").startswith("no such file")
    assert msg(tmp_path) == f"{tmp_path} is a directory, not a session file"
    (tmp_path / "latin1.json").write_bytes(b'{"a": "caf\xe9"}')
    latin1 = msg(tmp_path / "latin1.json")
    assert latin1 == f"{tmp_path / 'latin1.json'} is not UTF-8 text (bad byte at offset 10)"
    (tmp_path / "foreign.json").write_text('{"compilerOptions": {}}', encoding="utf-8")
    assert msg(tmp_path / "foreign.json") == f"{tmp_path / 'foreign.json'}: not a qwenchat session file"
    fifo = tmp_path / "fifo.json"
    if hasattr(os, "mkfifo"):
        os.mkfifo(fifo)
        assert "not a regular file" in msg(fifo)


def test_load_file_unreadable(tmp_path):
    p = tmp_path / "s.json"
    save_file(p, conv(("a", "b")), model="m", settings_overrides={}, seed=0)
    p.chmod(0)
    try:
        if os.access(p, os.R_OK):
            pytest.skip("running as root: permissions are not enforced")
        with pytest.raises(StoreError, match="cannot read .*permission denied"):
            load_file(p)
    finally:
        p.chmod(0o600)


def test_load_file_refuses_big_file_without_reading(tmp_path, monkeypatch):
    p = tmp_path / "big.json"
    p.write_bytes(b" " * 2000)
    monkeypatch.setattr(store, "MAX_FILE_BYTES", 1000)
    with pytest.raises(StoreError, match="too large"):
        load_file(p)


def test_load_file_accepts_bom(tmp_path):
    p = tmp_path / "bom.json"
    p.write_bytes(b"\xef\xbb\xbf" + json.dumps(doc()).encode())
    assert load_file(p).model == "m"


def test_save_file_to_directory(tmp_path):
    with pytest.raises(StoreError, match="is a directory"):
        save_file(tmp_path, conv(), model="m", settings_overrides={}, seed=0)


# -- property: nothing but StoreError escapes ------------------------------------------------------------

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids, max_size=4),
    max_leaves=20,
)
FIELDS = ["format", "version", "id", "created", "updated", "model", "settings", "seed", "conversation"]
SETTING_KEYS = st.sampled_from(
    [
        "temperature",
        "top_p",
        "top_k",
        "max_new_tokens",
        "do_sample",
        "stop_strings",
        "bad_words_ids",
        "output_scores",
        "max_length",
        "bogus",
        "",
    ]
)
NEAR_VALID = st.builds(
    lambda changes, setting: {**doc(**changes), **({"settings": setting} if setting is not None else {})},
    st.dictionaries(st.sampled_from(FIELDS), JSON, max_size=2),
    st.none() | st.dictionaries(SETTING_KEYS, JSON, max_size=3),
)
ROLE = st.sampled_from(["user", "assistant", "tool"]) | JSON
MESSAGE = st.fixed_dictionaries({"role": ROLE, "content": JSON}, optional={"interrupted": JSON})
CONVERSATIONS = st.builds(
    lambda msgs, v, s: doc(conversation={"version": v, "system": s, "messages": msgs}),
    st.lists(MESSAGE, max_size=3),
    st.integers(-1, 3) | JSON,
    st.text() | JSON,
)

GOOD_MESSAGE = st.builds(
    lambda r, t, i: {"role": r, "content": t, "interrupted": i},
    st.sampled_from(["user", "assistant"]),
    st.text(),
    st.booleans(),
)
GOOD_SETTINGS = st.fixed_dictionaries(
    {},
    optional={
        "temperature": st.floats(0, 2),
        "top_k": st.integers(0, 100),
        "stop_strings": st.lists(st.text(), max_size=2),
    },
)
VALID = st.builds(
    lambda msgs, system, overrides, seed: doc(
        conversation={"version": 1, "system": system, "messages": msgs}, settings=overrides, seed=seed
    ),
    st.lists(GOOD_MESSAGE, max_size=4),
    st.none() | st.text(),
    GOOD_SETTINGS,
    st.integers(0, 2**32 - 1),
)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(JSON, NEAR_VALID, CONVERSATIONS, VALID))
def test_arbitrary_json_gives_session_or_store_error(value):
    try:
        s = parse_session(json.dumps(value))
    except StoreError as exc:
        assert "\n" not in str(exc)
    else:
        assert isinstance(s, SessionFile)
        # Whatever was accepted saves and loads back the same.
        text = dump_session(
            s.conversation,
            model=s.model,
            settings_overrides=s.settings,
            seed=s.seed,
            session_id=s.id,
            created=s.created,
            updated=s.updated,
        )
        again = parse_session(text)
        assert again == s


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_arbitrary_text_gives_store_error(text):
    with pytest.raises(StoreError):
        parse_session(text)


# -- the autosave directory -------------------------------------------------------------------------------


def make_store(tmp_path, n=3):
    s = SessionStore(tmp_path / "sessions")
    ids = []
    for i in range(n):
        sid = f"2026010{i + 1}-120000-{i:04x}"
        s.autosave(
            sid,
            conv((f"question {i}", "answer")),
            model="m",
            settings_overrides={},
            seed=i,
            created=f"2026-01-0{i + 1}T12:00:00+00:00",
        )
        # autosave stamps "updated" with now; spread them so the order is known
        data = json.loads(s.path(sid).read_text(encoding="utf-8"))
        data["updated"] = f"2026-01-0{i + 1}T12:00:00+00:00"
        s.path(sid).write_text(json.dumps(data), encoding="utf-8")
        ids.append(sid)
    return s, ids


def test_default_root_honours_data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("QWENCHAT_DATA_DIR", str(tmp_path))
    assert SessionStore().root == tmp_path / "sessions"


def test_new_id_is_sortable_and_valid():
    a = SessionStore.new_id()
    assert re.fullmatch(r"\d{8}-\d{6}-[0-9a-f]{4}", a)
    assert SessionStore().path(a).name == f"{a}.json"
    with pytest.raises(StoreError):
        SessionStore().path("../x")


def test_autosave_overwrites_and_keeps_created(tmp_path):
    s = SessionStore(tmp_path)
    c = conv(("one", "1"))
    s.autosave(
        "id1",
        c,
        model="m",
        settings_overrides={"temperature": 0.5},
        seed=3,
        created="2026-01-01T00:00:00+00:00",
    )
    c.add_user("two")
    c.add_assistant("2", interrupted=True)
    path = s.autosave("id1", c, model="m", settings_overrides={}, seed=3, created="2026-01-01T00:00:00+00:00")
    loaded = load_file(path)
    assert loaded.conversation == c and loaded.created == "2026-01-01T00:00:00+00:00"
    assert loaded.settings == {} and sorted(os.listdir(tmp_path)) == ["id1.json"]


def test_autosave_failure_is_store_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(StoreError, match="autosave failed"):
        SessionStore(blocker / "sessions").autosave("a", conv(), model="m", settings_overrides={}, seed=0)


def test_list_newest_first_and_skips_corrupt(tmp_path):
    s, ids = make_store(tmp_path)
    (s.root / "broken.json").write_text("{not json", encoding="utf-8")
    (s.root / "foreign.json").write_text("[]", encoding="utf-8")
    (s.root / "notes.txt").write_text("ignored", encoding="utf-8")
    listed = s.list()
    assert [x.id for x in listed] == ids[::-1]
    assert sorted(p.name for p, _ in s.skipped) == ["broken.json", "foreign.json"]
    assert all("\n" not in why for _, why in s.skipped)


def test_list_of_missing_directory_is_empty(tmp_path):
    s = SessionStore(tmp_path / "none")
    assert s.list() == []
    with pytest.raises(StoreError, match="no saved sessions"):
        s.resolve("last")


def test_resolve(tmp_path):
    s, ids = make_store(tmp_path)
    assert s.resolve("last").id == ids[2]
    assert s.resolve(" LAST ").id == ids[2]
    assert s.resolve("1").id == ids[2] and s.resolve("3").id == ids[0]
    assert s.resolve(ids[1]).id == ids[1]
    assert s.resolve("20260102").id == ids[1]  # unique prefix
    with pytest.raises(StoreError) as info:
        s.resolve("2026010")
    assert "matches 3 sessions" in str(info.value) and ids[0] in str(info.value)
    with pytest.raises(StoreError) as info:
        s.resolve("zzz")
    msg = str(info.value)
    assert "no session 'zzz'" in msg and ids[2] in msg and "question 2" in msg and "\n" not in msg
    with pytest.raises(StoreError, match="no session '9'"):
        s.resolve("9")
    with pytest.raises(StoreError, match="which session"):
        s.resolve("  ")


def test_resolve_exact_id_beats_prefix(tmp_path):
    s = SessionStore(tmp_path)
    for sid in ("abc", "abcd"):
        s.autosave(sid, conv(), model="m", settings_overrides={}, seed=0)
    assert s.resolve("abc").id == "abc"
    assert s.resolve("abcd").id == "abcd"


def test_modules_do_not_import_torch():
    import subprocess
    import sys

    code = (
        "import sys, qwenchat.conversation.store, qwenchat.ui.clipboard, qwenchat.conversation.export; "
        "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# -- pipe runs are not "last"; user-named files are never created in a missing directory -----------------
def test_last_passes_over_pipe_runs_unless_there_is_nothing_else(tmp_path):
    s = SessionStore(tmp_path)

    def save(session_id, piped):
        s.autosave(session_id, conv(("q", "a")), model="m", settings_overrides={}, seed=0, piped=piped)

    save("20260101-000000-aaaa", True)
    assert s.resolve("last").id == "20260101-000000-aaaa"  # nothing else: the pipe run it is
    save("20260101-000000-bbbb", False)
    save("20260101-000000-cccc", True)
    assert s.resolve("last").id == "20260101-000000-bbbb"
    assert s.resolve("1").id == "20260101-000000-cccc" and s.resolve("1").piped
    assert '"piped"' not in s.path("20260101-000000-bbbb").read_text()  # interactive files unchanged


def test_piped_must_be_a_boolean():
    with pytest.raises(StoreError, match="'piped' must be true or false"):
        parse_session(json.dumps(doc(piped="yes")))


def test_save_file_refuses_a_missing_directory_and_overwriting_when_asked(tmp_path):
    with pytest.raises(StoreError, match="there is no directory"):
        save_file(tmp_path / "no" / "s.json", conv(), model="m", settings_overrides={}, seed=0)
    assert not (tmp_path / "no").exists()
    target = tmp_path / "s.json"
    save_file(target, conv(("a", "b")), model="m", settings_overrides={}, seed=0, overwrite=False)
    with pytest.raises(store.TargetExists):
        save_file(target, conv(), model="m", settings_overrides={}, seed=0, overwrite=False)
    assert load_file(target).conversation.exchanges() == 1


# -- text no file can hold, private files, one writer per session ------------------------------------------


def test_lone_surrogates_are_replaced_visibly_and_counted():
    d = doc()
    d["conversation"]["messages"][1]["content"] = "A\ud800B"
    d["conversation"]["system"] = "\udfffsys"
    text = json.dumps(d)  # json escapes them: "\ud800", as a crafted file would hold them
    assert "\\ud800" in text
    s = parse_session(text)
    assert s.replaced == 2
    assert s.conversation.messages[1].content == "A\ufffdB" and s.conversation.system == "\ufffdsys"
    assert parse_session(json.dumps(doc())).replaced == 0
    pair = doc()
    pair["conversation"]["messages"][1]["content"] = "\U0001f600"  # a proper pair is one character
    assert parse_session(json.dumps(pair)).conversation.messages[1].content == "\U0001f600"


def test_dump_never_fails_on_a_lone_surrogate(tmp_path):
    c = conv(("q", "x\udc80y"))
    path = SessionStore(tmp_path).autosave("a", c, model="m", settings_overrides={}, seed=0)
    assert load_file(path).conversation.messages[1].content == "x\ufffdy"


def test_autosave_folders_and_files_are_private(tmp_path):
    old = os.umask(0o022)
    try:
        store = SessionStore(tmp_path / "new" / "data" / "sessions")
        path = store.autosave("a", conv(("q", "a")), model="m", settings_overrides={}, seed=0)
    finally:
        os.umask(old)
    for folder in (tmp_path / "new", tmp_path / "new" / "data", store.root):
        assert folder.stat().st_mode & 0o777 == 0o700, folder
    assert path.stat().st_mode & 0o777 == 0o600


def test_one_store_at_a_time_holds_a_session(tmp_path):
    first, second = SessionStore(tmp_path), SessionStore(tmp_path)
    assert first.claim("s1") is True and first.claim("s1") is True
    assert second.claim("s1") == os.getpid()  # held elsewhere: who holds it
    assert second.claim("s2") is True
    assert first.claim("s2") == os.getpid() and first.claim("s1") is True  # a refusal keeps the old lock
    first.release()
    assert not (tmp_path / "s1.lock").exists()
    assert second.claim("s1") is True and not (tmp_path / "s2.lock").exists()  # moving lets go


def test_a_stale_lock_file_is_no_obstacle(tmp_path):
    (tmp_path / "s1.lock").write_text("999999999\n")  # left by a process killed -9: no flock on it
    assert SessionStore(tmp_path).claim("s1") is True
