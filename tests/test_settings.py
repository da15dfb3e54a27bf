import subprocess
import sys

import pytest

from qwenchat.config_file import read_config_file
from qwenchat.engines.api import GenerationRequest
from qwenchat.engines.generation_config import generation_schema
from qwenchat.settings import (
    COMMON,
    DEFAULT_SEED,
    ConfigError,
    Settings,
    SettingsSchema,
    check_value,
    layered_settings,
    parse_assignments,
    parse_value,
)


def test_parse_value_literals_and_bare_words():
    assert parse_value("0.5") == 0.5
    assert parse_value("12") == 12
    assert parse_value("true") is True and parse_value("False") is False
    assert parse_value("none") is None
    assert parse_value("['a', 'b']") == ["a", "b"]
    assert parse_value("hello") == "hello"
    assert parse_value("__import__('os').system('echo hi')") == "__import__('os').system('echo hi')"


def test_parse_assignments_quoted_and_errors():
    assert parse_assignments('temperature=0.3 stop_strings="a b"') == {
        "temperature": 0.3,
        "stop_strings": "a b",
    }
    for bad in ["temperature", "=3", "temperature=", "'unclosed", ""]:
        with pytest.raises(ConfigError):
            parse_assignments(bad)


@pytest.mark.parametrize(
    "key,value,msg",
    [
        ("temperature", "abc", "must be float"),
        ("temperature", -1, ">= 0"),
        ("top_p", 1.5, "in (0, 1]"),
        ("top_k", 2.5, "must be int"),
        ("max_new_tokens", 0, "> 0"),
        ("do_sample", 1, "must be bool"),
        ("max_new_tokens", True, "must be int"),
        ("temprature", 1.0, "did you mean temperature"),
        ("output_scores", True, "cannot be changed"),
    ],
)
def test_check_value_rejects(key, value, msg):
    with pytest.raises(ConfigError, match=None) as info:
        check_value(key, value, generation_schema)  # the long tail as the CLI and the session file pass it
    assert msg in str(info.value)


def test_int_accepted_for_float():
    assert check_value("temperature", 1) == 1.0


def test_settings_all_or_nothing():
    s = Settings({"temperature": 0.7, "top_p": 0.8})
    with pytest.raises(ConfigError):
        s.apply("temperature=0.2 top_p=7")
    assert s.overrides == {} and s.effective()["temperature"] == 0.7
    s.apply("temperature=0.2 top_k=5")
    assert s.effective()["temperature"] == 0.2 and s.changed() == {"temperature": 0.2, "top_k": 5}
    with pytest.raises(ConfigError, match="min_new_tokens"):
        s.apply("min_new_tokens=100 max_new_tokens=10")
    assert "min_new_tokens" not in s.overrides
    s.reset()
    assert s.overrides == {}


def test_seed():
    s = Settings(seed=7)
    assert s.set_seed(" 42 ") == 42 and s.seed == 42
    for bad in ["x", "-1", str(2**40), "1.5"]:
        with pytest.raises(ConfigError):
            s.set_seed(bad)
    assert s.seed == 42
    s.reset()
    assert s.seed == 7


def test_seed_default_is_the_demo_seed():
    assert Settings().seed == 1234
    assert Settings().effective()["max_new_tokens"] == 2048


# -- the schema each engine declares -------------------------------------------------------------
LLAMA_KEYS = ("temperature", "top_p", "max_new_tokens")
LLAMA = SettingsSchema("the llama.cpp engine", {k: COMMON[k] for k in LLAMA_KEYS})


def test_a_setting_the_engine_cannot_honour_is_refused_all_or_nothing():
    s = Settings({"temperature": 0.7}, schema=LLAMA)
    with pytest.raises(ConfigError) as info:
        s.apply("temperature=0.2 num_beams=4")
    assert str(info.value) == "num_beams: the llama.cpp engine cannot honour it"
    assert s.overrides == {} and s.effective()["temperature"] == 0.7
    with pytest.raises(ConfigError, match=r"unknown setting 'temprature'.*did you mean temperature"):
        s.apply("temprature=1")
    assert s.apply("temperature=0.2") == {"temperature": 0.2}


def test_completion_words_are_what_the_engine_honours():
    assert Settings(schema=LLAMA).words() == ["max_new_tokens", "temperature", "top_p"]
    assert "num_beams" in Settings().words()  # no engine schema: every common setting
    assert set(Settings(schema=LLAMA).all_values()) == {"max_new_tokens", "temperature", "top_p"}


def test_a_refusal_the_engine_learns_later():
    refused = set()
    schema = SettingsSchema(
        "a server", {"top_k": COMMON["top_k"]}, refused=lambda k: "it said no" if k in refused else None
    )
    assert schema.check("top_k", 5) == 5 and schema.words() == ["top_k"]
    refused.add("top_k")
    with pytest.raises(ConfigError, match="top_k: it said no"):
        schema.check("top_k", 5)
    assert schema.words() == [] and schema.split({"top_k": 5}) == ({}, ["top_k"])


def test_adopting_saved_settings_drops_what_the_engine_cannot_honour():
    s = Settings({"temperature": 0.7}, schema=LLAMA)
    assert s.adopt({"temperature": 0.1, "num_beams": 2, "no_repeat_ngram_size": 3}) == [
        "no_repeat_ngram_size",
        "num_beams",
    ]
    assert s.overrides == {"temperature": 0.1}
    assert LLAMA.dropped_notice(["num_beams"], "the saved session") == (
        "the llama.cpp engine cannot honour num_beams from the saved session: dropped"
    )
    with pytest.raises(ConfigError, match="temperature must be float"):
        s.adopt({"temperature": "hot"})
    assert s.overrides == {"temperature": 0.1}


def test_layered_settings_refuse_flags_and_drop_file_values_the_engine_cannot_honour():
    file = {"num_beams": 2, "top_p": 0.5}
    s = layered_settings({"temperature": 0.7}, file, {"max_new_tokens": 9}, 1, LLAMA)
    assert s.effective() == {"temperature": 0.7, "top_p": 0.5, "max_new_tokens": 9}
    assert s.dropped == ["num_beams"] and s.sources == {"top_p": "config", "max_new_tokens": "flag"}
    with pytest.raises(ConfigError, match="top_k: the llama.cpp engine cannot honour it"):
        layered_settings({}, {}, {"top_k": 3}, 1, LLAMA)
    with pytest.raises(ConfigError, match=r"config file \[generation\] top_p must be in \(0, 1\]"):
        layered_settings({}, {"top_p": 3.0}, {}, 1, LLAMA)


def test_transformers_schema_owns_the_generation_config_vocabulary():
    from qwenchat.engines.generation_config import generation_defaults, generation_schema

    schema = generation_schema()
    assert schema.check("no_repeat_ngram_size", 3) == 3 and "bad_words_ids" in schema.words()
    with pytest.raises(ConfigError, match="output_scores cannot be changed"):
        schema.check("output_scores", True)
    s = Settings(schema=schema)
    with pytest.raises(ConfigError, match="min_new_tokens"):
        s.apply("min_new_tokens=100 max_new_tokens=10")
    # `:conf all`: GenerationConfig's defaults under the effective values, as before the schema
    assert s.all_values() == {**generation_defaults(), **s.effective()}


def test_request_rules_apply_once_for_every_engine():
    r = GenerationRequest([], {"temperature": 0, "top_p": 0.5, "top_k": 3, "max_new_tokens": 5})
    assert r.settings == {"do_sample": False, "max_new_tokens": 5}
    r = GenerationRequest([], {"do_sample": False, "temperature": 0.7, "repetition_penalty": 1.1})
    assert r.settings == {"do_sample": False, "repetition_penalty": 1.1}
    # A missing do_sample stays missing: the engine's own default applies.
    assert GenerationRequest([], {"temperature": 0.5}).settings == {"temperature": 0.5}


# -- the config file --------------------------------------------------------------------------------
def write(tmp_path, text):
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_config_file_tables_are_checked(tmp_path):
    text = '[generation]\ntemperature = 1\n[chat]\nstats = true\nthink = "hide"\nsystem = "x"\n'
    path = write(tmp_path, text)
    assert read_config_file(path) == {
        "generation": {"temperature": 1.0},
        "chat": {"stats": True, "think": "hide", "system": "x"},
    }
    assert read_config_file(tmp_path / "missing.toml") == {}


@pytest.mark.parametrize(
    "text,msg",
    [
        ('[chat]\nstats = "off"\n', "[chat] stats must be bool, got 'off'"),
        ("chat = 1\n", "[chat] must be a table"),
        ('[chat]\nthink = "folded"\n', "[chat] think must be one of show, fold, hide"),
        ("[chat]\nstat = true\n", "[chat] unknown key 'stat'; did you mean stats?"),
        ('[generation]\ntemperature = "hot"\n', "[generation] temperature must be float"),
        ("[generation]\noutput_scores = true\n", "[generation] output_scores cannot be changed"),
        ("[other]\n", "unknown table(s) other"),
        ("[chat\n", "config.toml: "),
    ],
)
def test_config_file_errors_are_one_line_naming_file_table_key(tmp_path, text, msg):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        read_config_file(path, generation_schema)
    assert str(info.value).startswith(f"{path}: ") and msg in str(info.value) and "\n" not in str(info.value)


def test_endpoint_and_llamacpp_paths_import_neither_transformers_nor_torch():
    code = (
        "import sys, qwenchat.settings as s\n"
        "import qwenchat.engines.openai.engine, qwenchat.engines.llamacpp.engine\n"
        "s.check_value('temperature', 0.5)\n"
        "st = s.layered_settings({}, {'top_p': 0.5}, {'temperature': 0.5}, 1)\n"
        "st.apply('top_k=5 max_new_tokens=9')\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'transformers')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_conf_values_keep_their_quotes_and_brackets():
    assert parse_assignments("stop_strings=['END', 'a b'] temperature=0.3") == {
        "stop_strings": ["END", "a b"],
        "temperature": 0.3,
    }
    assert parse_assignments(r'stop_strings="say \"hi\"" top_k=None') == {
        "stop_strings": 'say "hi"',
        "top_k": None,
    }
    assert parse_assignments("stop_strings=[]") == {"stop_strings": []}
    with pytest.raises(ConfigError, match="not a valid Python literal"):
        parse_assignments("stop_strings=[END]")  # a literal that is not one is refused, not a word
    with pytest.raises(ConfigError, match=":reset-conf stop_strings"):
        parse_assignments("stop_strings=")


def test_reset_keys_restores_one_setting_and_keeps_the_others():
    s = Settings({"temperature": 0.7})
    s.apply("temperature=0.2 top_p=0.5")
    s.set_seed("9")
    assert s.reset_keys(["temperature", "seed"]) == {"temperature": 0.7, "seed": DEFAULT_SEED}
    assert s.overrides == {"top_p": 0.5}
    with pytest.raises(ConfigError, match="unknown setting"):
        s.reset_keys(["top_p", "bogus"])
    assert s.overrides == {"top_p": 0.5}  # all or nothing


@pytest.mark.parametrize(
    "text,msg",
    [
        ("temperature=1e309", "temperature must be a finite number, got inf"),
        ("max_time=1e309", "max_time must be a finite number"),
        ("temperature=" + "9" * 400, "temperature is out of range, got 9999"),
        ("max_new_tokens=" + "9" * 30, "max_new_tokens is out of range"),
        ("stop_strings={1,2}", "must be a number, string, boolean or [list], not a set"),
        ("stop_strings=[[[[[1]]]]]", "not a deeply nested list"),
    ],
)
def test_values_a_session_file_cannot_store_are_refused(text, msg):
    """One step in check_spec: what :conf takes, a session file (JSON) and a server request can hold."""
    s = Settings({"temperature": 0.7})
    with pytest.raises(ConfigError) as info:
        s.apply(text)
    assert msg in str(info.value) and len(str(info.value)) < 120
    assert s.overrides == {}


def test_transformers_long_tail_values_must_be_storable_too():
    pytest.importorskip("transformers")
    from qwenchat.engines.generation_config import generation_schema

    schema = generation_schema()
    for key, value in (("suppress_tokens", {1, 2}), ("suppress_tokens", (1, 2)), ("epsilon_cutoff", 1j)):
        with pytest.raises(ConfigError, match="must be a"):
            schema.check(key, value)
    assert schema.check("suppress_tokens", [1, 2]) == [1, 2]


def test_seed_refuses_huge_and_non_ascii_numbers_in_one_short_line():
    s = Settings(seed=7)
    for bad in ["9" * 5000, "²", "١٢"]:
        with pytest.raises(ConfigError, match="seed must be an integer") as info:
            s.set_seed(bad)
        assert len(str(info.value)) < 100
    assert s.seed == 7


def test_transformers_engine_refuses_beam_search():
    """Found by hand: num_beams=2 was accepted, then every turn failed inside generate (a streamer and a
    one-sequence KV cache cannot do beam search)."""
    pytest.importorskip("transformers")
    from qwenchat.engines.generation_config import generation_defaults, generation_schema

    s = Settings(generation_defaults(), schema=generation_schema())
    with pytest.raises(ConfigError, match="num_beams: beam search cannot stream"):
        s.apply("num_beams=2")
    assert s.overrides == {}
    assert s.apply("num_beams=1") == {"num_beams": 1}
