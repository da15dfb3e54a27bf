"""The model hubs: reachability probes (proxies included), ModelScope / Hugging Face snapshot downloads and
cache look-ups, and one short phrase per hub failure.

The hub clients are imported lazily. Nothing here prints: callers pass a `progress` callback. Every failure is
a LoadError with one line of text.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

from qwenchat.errors import first_line
from qwenchat.models import LoadError
from qwenchat.models.progress import Progress, say

SOURCES = ("auto", "modelscope", "hf")
# Files that from_pretrained never reads; skipping them saves gigabytes on some repos.
_SNAPSHOT_IGNORE = ["*.gguf", "*.onnx", "*.onnx_data", "*.h5", "*.msgpack", "*.ot", "*.tflite", "original/*"]
# A hub that does not answer a TCP connect within this is treated as unreachable (no 25 s of retries).
CONNECT_TIMEOUT_S = 3.0
_HUB_TITLES = {"ModelScope": "ModelScope", "Hugging Face": "the Hugging Face hub"}


class HubOptions(Protocol):
    """What a snapshot needs from the load options (`loader.LoadOptions` has these fields)."""

    source: str  # auto|modelscope|hf
    revision: str | None
    cache_dir: str | None
    offline: bool


def _modelscope_snapshot(repo_id: str, revision: str | None, cache_dir: str | None, offline: bool) -> str:
    """Download (or, offline, find in the local cache) a ModelScope snapshot; returns its directory."""
    from modelscope import snapshot_download

    with _quiet_modelscope_logs():
        return snapshot_download(
            repo_id,
            revision=revision,
            cache_dir=cache_dir,
            local_files_only=offline,
            ignore_patterns=_SNAPSHOT_IGNORE,
        )


def _hf_snapshot(repo_id: str, revision: str | None, cache_dir: str | None, offline: bool) -> str:
    """Download (or, offline, find in the local cache) a Hugging Face hub snapshot; returns its directory."""
    from huggingface_hub import snapshot_download

    return snapshot_download(
        repo_id,
        revision=revision,
        cache_dir=cache_dir,
        local_files_only=offline,
        ignore_patterns=_SNAPSHOT_IGNORE,
    )


def _modelscope_cache(cache_dir: str | None) -> str:
    if cache_dir:
        return cache_dir
    try:  # modelscope_hub does the downloads in current modelscope; its cache root differs from the old one
        from modelscope_hub import get_default_config

        return str(get_default_config().cache_dir)
    except Exception:  # only for the error message; never let it hide the real failure
        pass
    try:
        from modelscope.utils.file_utils import get_modelscope_cache_dir

        return str(get_modelscope_cache_dir())
    except Exception:
        return "the ModelScope cache"


def _hf_cache(cache_dir: str | None) -> str:
    if cache_dir:
        return cache_dir
    try:
        from huggingface_hub import constants

        return str(constants.HF_HUB_CACHE)
    except Exception:  # only for the error message
        return "the Hugging Face cache"


def _describe_hub_error(exc: BaseException, hub: str, offline: bool) -> str:
    """One short phrase for a hub failure; the clients' own messages are multi-line and noisy."""
    names = {cls.__name__ for cls in type(exc).__mro__}
    if isinstance(exc, ImportError):
        package = "modelscope" if hub == "ModelScope" else "huggingface_hub"
        return f"not installed (pip install {package})"
    if "GatedRepoError" in names:
        return "gated repository: accept its terms on the website and log in (hf auth login)"
    if "RevisionNotFoundError" in names:
        return "revision not found"
    if names & {"RepositoryNotFoundError", "NotExistError"}:
        return "repository not found (or private: log in first)"
    if names & {"LocalEntryNotFoundError", "OfflineModeIsEnabled", "CacheNotFound", "CacheError"}:
        return "not in the local cache" if offline else "not cached and the hub could not be reached"
    if isinstance(exc, ConnectionError) or "NetworkError" in names:
        return "the hub could not be reached (network error)"
    return first_line(exc)


# --- reaching the hubs ---------------------------------------------------------------------------------


def _address(url: str) -> tuple[str, int] | None:
    """(host, port) of an endpoint or proxy URL; None when it cannot be parsed."""
    try:
        parts = urlsplit(url if "://" in url else f"https://{url}")
        port = parts.port
    except ValueError:
        return None
    if not parts.hostname:
        return None
    return parts.hostname, port or (80 if parts.scheme == "http" else 443)


def _hub_addresses(hub: str) -> list[tuple[str, int]]:
    """Where the hub client will connect: the configured endpoint, else the defaults."""
    if hub == "ModelScope":
        configured = os.environ.get("MODELSCOPE_ENDPOINT") or os.environ.get("MODELSCOPE_DOMAIN")
        # Unconfigured, modelscope tries modelscope.cn and falls back to modelscope.ai.
        urls = [configured] if configured else ["https://modelscope.cn", "https://www.modelscope.ai"]
    else:
        urls = [os.environ.get("HF_ENDPOINT") or "https://huggingface.co"]
    return [a for a in map(_address, urls) if a is not None]


def _proxy_for(host: str) -> tuple[str, int] | None:
    """The HTTPS proxy the hub clients (requests, httpx) would use for `host`, from the environment."""
    import urllib.request

    proxies = urllib.request.getproxies()
    url = proxies.get("https") or proxies.get("all")
    if not url or urllib.request.proxy_bypass(host):
        return None
    return _address(url)


def _reachable(host: str, port: int = 443, timeout: float = CONNECT_TIMEOUT_S) -> bool:
    """Whether a TCP connection to `host` (or to the proxy in front of it) opens within `timeout`."""
    target = _proxy_for(host) or (host, port)
    answer: list[bool] = []

    def probe() -> None:
        try:
            with socket.create_connection(target, timeout=timeout):
                answer.append(True)
        except OSError:  # DNS failure, refused, timed out, no route
            answer.append(False)

    # The socket timeout does not cover the DNS lookup, which can hang on a broken resolver.
    worker = threading.Thread(target=probe, name="qwenchat-reachable", daemon=True)
    worker.start()
    worker.join(timeout)
    return bool(answer and answer[0])


def _hub_reachable(hub: str) -> bool:
    hf_offline = os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")
    if hub == "Hugging Face" and hf_offline:
        return True  # the client itself stays offline and answers from its cache
    addresses = _hub_addresses(hub)
    if not addresses:  # an endpoint we cannot parse: let the client try and report
        return True
    deadline = time.monotonic() + CONNECT_TIMEOUT_S
    return any(_reachable(host, port, max(0.5, deadline - time.monotonic())) for host, port in addresses)


class _BelowError(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.ERROR


@contextlib.contextmanager
def _quiet_modelscope_logs() -> Iterator[None]:
    """Hide ModelScope's WARNING lines (one per retry) for one call; its outcome becomes a LoadError anyway.

    Enter after importing modelscope, which sets its loggers' levels on import. Restored on exit.
    """
    loggers = [logging.getLogger(name) for name in ("modelscope", "modelscope_hub")]
    levels = [lg.level for lg in loggers]
    drop = _BelowError()
    for lg in loggers:
        lg.setLevel(logging.ERROR)  # the modelscope_hub.* loggers inherit it
        lg.addFilter(drop)  # modelscope's get_logger() resets its level on every call; a filter stays
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.removeFilter(drop)
            lg.setLevel(level)


# --- hub snapshots -------------------------------------------------------------------------------------


def snapshot(repo_id: str, options: HubOptions, progress: Progress, marker: str, what: str) -> Path:
    """A local snapshot of `repo_id` that holds `marker` (config.json for models), from the hubs in order."""
    if options.source not in SOURCES:
        raise LoadError(f"--source must be one of {', '.join(SOURCES)}; got {options.source!r}")
    label = f"{what} {repo_id}".strip()
    hubs = {"auto": ("ModelScope", "Hugging Face"), "modelscope": ("ModelScope",), "hf": ("Hugging Face",)}
    failures: list[tuple[str, str]] = []
    unreachable: list[str] = []
    for hub in hubs[options.source]:
        if not options.offline and not _hub_reachable(hub):
            # Fail in a second rather than after the client's retries (ModelScope: about 25 s).
            unreachable.append(hub)
            hosts = ", ".join(host for host, _ in _hub_addresses(hub))
            failures.append((hub, f"cannot be reached ({hosts})"))
            continue
        say(progress, f"looking for {label} in the {hub} {'cache' if options.offline else 'hub'}")
        try:
            fetch = _modelscope_snapshot if hub == "ModelScope" else _hf_snapshot
            local = fetch(repo_id, options.revision, options.cache_dir, options.offline)
        except Exception as exc:  # any client failure is one attempt that did not work
            failures.append((hub, _describe_hub_error(exc, hub, options.offline)))
            continue
        path = Path(local)
        if (path / marker).is_file():
            return path
        kind = "not a transformers model" if marker == "config.json" else "not a PEFT adapter"
        failures.append((hub, f"its snapshot {path} has no {marker} ({kind})"))

    if options.offline:
        looked = []
        for hub, reason in failures:
            cache = (
                _modelscope_cache(options.cache_dir) if hub == "ModelScope" else _hf_cache(options.cache_dir)
            )
            extra = "" if reason == "not in the local cache" else f" ({reason})"
            looked.append(f"the {hub} cache {cache}{extra}")
        raise LoadError(f"{label} is not in the local cache (offline); looked in " + " and ".join(looked))
    if unreachable and len(unreachable) == len(failures):
        # No network: a copy already in a hub cache is as good as a download (as --offline would find it).
        try:
            offline = dataclasses.replace(options, offline=True)  # type: ignore[type-var]
            return snapshot(repo_id, offline, progress, marker, what)
        except LoadError:
            pass
        titles = " or ".join(_HUB_TITLES[hub] for hub in unreachable)
        raise LoadError(
            f"cannot reach {titles} (offline?) to download {label}; "
            "use a local path, or --offline with a cached model"
        )
    tried = "; ".join(f"{hub}: {reason}" for hub, reason in failures)
    raise LoadError(f"could not download {label}: {tried}")
