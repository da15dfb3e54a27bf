import pytest

from qwenchat.settings import ConfigError, Settings, check_value, parse_assignments, parse_value


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
        check_value(key, value)
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
