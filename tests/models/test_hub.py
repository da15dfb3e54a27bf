"""The hubs without a network: where the clients would connect, the TCP reachability probe (proxies, a
hanging resolver) and ModelScope's retry warnings (qwenchat.models.hub).

The downloads themselves are tested through `loader.download`/`loader.load` (test_loader, test_model_options).
"""

from __future__ import annotations

import logging
import socket
import threading
import time

import pytest

from qwenchat.models import hub


def test_hub_addresses_follow_the_configured_endpoints(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HF_ENDPOINT", "MODELSCOPE_ENDPOINT", "MODELSCOPE_DOMAIN", "HF_HUB_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    assert hub._hub_addresses("Hugging Face") == [("huggingface.co", 443)]
    assert hub._hub_addresses("ModelScope") == [("modelscope.cn", 443), ("www.modelscope.ai", 443)]
    monkeypatch.setenv("HF_ENDPOINT", "http://hf-mirror.local:8080/")
    monkeypatch.setenv("MODELSCOPE_DOMAIN", "ms.internal")
    assert hub._hub_addresses("Hugging Face") == [("hf-mirror.local", 8080)]
    assert hub._hub_addresses("ModelScope") == [("ms.internal", 443)]
    # HF_HUB_OFFLINE keeps the HF client on its cache, so there is nothing to probe.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hub, "_reachable", lambda *a, **k: pytest.fail("not probed"))
    assert hub._hub_reachable("Hugging Face")


def test_reachable_probes_a_tcp_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY", "no_proxy", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        assert hub._reachable("127.0.0.1", port, timeout=1.0)
        # Behind a proxy only the proxy has to answer (the clients resolve nothing themselves).
        monkeypatch.setenv("https_proxy", f"http://127.0.0.1:{port}")
        assert hub._reachable("hub.invalid", 443, timeout=1.0)
    monkeypatch.delenv("https_proxy")
    start = time.monotonic()
    assert not hub._reachable("127.0.0.1", port, timeout=1.0)  # closed now
    assert not hub._reachable("hub.invalid", 443, timeout=1.0)
    assert time.monotonic() - start < 3.0


def test_reachable_does_not_wait_on_a_hanging_resolver(monkeypatch: pytest.MonkeyPatch) -> None:
    release = threading.Event()

    def hang(*args: object, **kwargs: object) -> None:
        release.wait(10)  # a DNS lookup that never answers: the socket timeout does not cover it
        raise OSError("too late")

    monkeypatch.setattr(socket, "create_connection", hang)
    start = time.monotonic()
    assert not hub._reachable("huggingface.co", 443, timeout=0.3)
    assert time.monotonic() - start < 1.0
    release.set()


def test_modelscope_warnings_are_hidden_during_a_call_only() -> None:
    hub_child = logging.getLogger("modelscope_hub.legacy_api")
    legacy = logging.getLogger("modelscope")
    before = (logging.getLogger("modelscope_hub").level, legacy.level)
    record = legacy.makeRecord("modelscope", logging.WARNING, __file__, 1, "retry in 1s", None, None)
    with hub._quiet_modelscope_logs():
        assert not hub_child.isEnabledFor(logging.WARNING)
        assert hub_child.isEnabledFor(logging.ERROR)
        legacy.setLevel(logging.INFO)  # what modelscope's get_logger() does on every call
        assert not legacy.filter(record)
    assert (logging.getLogger("modelscope_hub").level, legacy.level) == before
    assert legacy.filter(record)
