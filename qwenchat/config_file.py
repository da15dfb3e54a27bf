"""The config file (`config.toml`): its `[generation]` and `[chat]` tables, read and checked strictly, and
the settings the command line may give as flags."""

from __future__ import annotations

from typing import Any

from qwenchat.settings import ConfigError, LongTail, Spec, check_spec, check_value, suggest

_FLAGS = "max_new_tokens temperature top_p top_k repetition_penalty prompt_lookup_num_tokens"
FLAG_KEYS = tuple(_FLAGS.split())

# The [chat] table: the session's display and prompt defaults, checked by the same code as [generation].
CHAT_TABLE: dict[str, Spec] = {
    "system": Spec(str),
    "stats": Spec(bool),
    "markdown": Spec(bool),
    "think": Spec(str, choices=("show", "fold", "hide")),
}


def config_file_path() -> Any:
    from qwenchat.paths import config_dir

    return config_dir() / "config.toml"


def _table(data: dict[str, Any], name: str, path: Any) -> dict[str, Any]:
    table = data.get(name, {})
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: [{name}] must be a table, got {table!r:.40}")
    return table


def read_config_file(path: Any = None, long_tail: LongTail | None = None) -> dict[str, Any]:
    """The checked `[generation]` and `[chat]` tables of config.toml (`long_tail` as for check_value); a
    bad file, table, key or value is one ConfigError line naming the file, the table and the key."""
    import sys

    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib

    path = path or config_file_path()
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        return {}
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: {exc}") from None
    unknown = set(data) - {"generation", "chat"}
    if unknown:
        raise ConfigError(
            f"{path}: unknown table(s) {', '.join(sorted(unknown))}; expected [generation], [chat]"
        )
    generation, chat = _table(data, "generation", path), _table(data, "chat", path)
    try:
        checked = {k: check_value(k, v, long_tail) for k, v in generation.items()}
    except ConfigError as exc:
        raise ConfigError(f"{path}: [generation] {exc}") from None
    chat_checked: dict[str, Any] = {}
    for key, value in chat.items():
        if key not in CHAT_TABLE:
            raise ConfigError(f"{path}: [chat] unknown key {key!r}{suggest(key, CHAT_TABLE)}")
        try:
            chat_checked[key] = check_spec(key, CHAT_TABLE[key], value)
        except ConfigError as exc:
            raise ConfigError(f"{path}: [chat] {exc}") from None
    return {"generation": checked, "chat": chat_checked}
