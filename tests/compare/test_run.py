""":compare on real models: the demo model (greedy and sampled variants, the shared prefix reused, :pick),
and a tiny random Qwen2 with LoRA adapters made here with peft (adapter=off,on; off is the base model)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from qwenchat.chat.session import ChatSession
from qwenchat.compare.run import run_compare
from qwenchat.engines.transformers.engine import TransformersEngine
from qwenchat.models import loader
from qwenchat.models.loader import LoadOptions
from qwenchat.ui.repl import Repl


class Collect:
    """A CompareObserver that keeps the results."""

    def __init__(self) -> None:
        self.done = []

    def variant_start(self, label: str, describe: str) -> None:
        pass

    def variant_done(self, result) -> None:
        self.done.append(result)


# --- the demo model ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def demo_engine(demo_loaded) -> TransformersEngine:
    return TransformersEngine(demo_loaded.model, demo_loaded.tokenizer, demo_loaded.name)


@pytest.fixture
def demo_app(demo_engine, out) -> Repl:
    demo_engine.reset()
    app = Repl(ChatSession(demo_engine), out)
    app.handle_line(":conf do_sample=False max_new_tokens=6")
    app.handle_line("Name three colours.")
    assert not app.failed
    return app


def test_greedy_variants_with_other_seeds_are_identical_and_share_the_prefix(demo_app):
    s = demo_app.session
    prompt = s.last_stats.prompt_tokens
    run = run_compare(s, "seed=1,2,3", Collect())
    texts = [r.text for r in run.results]
    assert texts[0] and texts == [texts[0]] * 3
    assert [str(d.one_line()) for d in run.summaries()[1:]] == ["identical", "identical"]
    # The turn before computed the prompt; each variant computed only its last token.
    assert [r.stats.prompt_tokens for r in run.results] == [prompt] * 3
    assert [r.stats.prefilled_tokens for r in run.results] == [1, 1, 1]
    assert texts[0] == s.conversation.messages[-1].content  # the same answer as the turn itself


def test_from_a_cold_cache_the_prefix_is_computed_once(demo_app):
    s = demo_app.session
    s.engine.reset()
    run = run_compare(s, "seed=1,2", Collect())
    prompt = run.results[0].stats.prompt_tokens
    assert [r.stats.prefilled_tokens for r in run.results] == [prompt, 1]


def test_sampled_variants_with_other_seeds_differ_and_pick_keeps_the_right_text(demo_app):
    app, s = demo_app, demo_app.session
    app.handle_line(":conf max_new_tokens=10")
    before = dict(s.settings.overrides)
    app.handle_line(":compare do_sample=True temperature=1.5 seed=11,22")
    alts = s.conversation.messages[-1].alternatives
    assert [a.label for a in alts] == ["A", "B"]
    assert alts[0].content != alts[1].content
    assert "differ from word" in app.renderer.buf.getvalue()
    assert s.settings.overrides == before  # do_sample is off again for the chat
    app.handle_line(":pick B")
    assert s.conversation.messages[-1].content == alts[1].content
    seen = len(app.renderer.buf.getvalue())
    app.handle_line(":his")
    shown = app.renderer.buf.getvalue()[seen:].rstrip()
    answer, hint = shown.rsplit("\n", 1)
    assert hint == "(alternatives kept in the session: A, B, orig)"
    assert answer.rstrip().endswith(alts[1].content.strip().splitlines()[-1].strip())


# --- a tiny Qwen2 with LoRA adapters -------------------------------------------------------------------
F32 = {"cpu_only": True, "dtype": "float32"}


@pytest.fixture(scope="module")
def base_dir(tiny_dir) -> Path:
    return tiny_dir  # conftest: the tiny model saved once for the session


def _make_adapter(base_dir: Path, out: Path, seed: int, targets: list[str]) -> Path:
    """A LoRA adapter whose B matrices are random (fresh ones are zero and change nothing)."""
    peft = pytest.importorskip("peft", reason="LoRA adapters need peft (pip install 'qwenchat[lora]')")
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    config = peft.LoraConfig(r=4, lora_alpha=8, target_modules=targets, task_type="CAUSAL_LM")
    peft_model = peft.get_peft_model(model, config)
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, weight in peft_model.named_parameters():
            if "lora_B" in name:
                weight.normal_(0.0, 0.5)
    peft_model.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def lora_engine(base_dir, tmp_path_factory) -> TransformersEngine:
    root = tmp_path_factory.mktemp("adapters")
    first = _make_adapter(base_dir, root / "first", 1, ["q_proj", "v_proj"])
    second = _make_adapter(base_dir, root / "second", 2, ["k_proj", "o_proj"])
    options = LoadOptions(adapters=[str(first), str(second)], **F32)
    loaded = loader.load(loader.resolve(str(base_dir)), options)
    engine = TransformersEngine(loaded.model, loaded.tokenizer, loaded.name, adapters=loaded.adapters)
    engine.prefill_chunk = 8  # short prompts still have whole chunks to keep
    return engine


@pytest.fixture(scope="module")
def plain_engine(base_dir) -> TransformersEngine:
    loaded = loader.load(loader.resolve(str(base_dir)), LoadOptions(**F32))
    return TransformersEngine(loaded.model, loaded.tokenizer, loaded.name)


def _session(engine: TransformersEngine) -> ChatSession:
    engine.reset()
    s = ChatSession(engine)
    s.settings.update({"do_sample": False, "max_new_tokens": 10})
    return s


def test_adapter_off_on_differ_and_off_is_the_base_model_exactly(lora_engine, plain_engine):
    base = _session(plain_engine)
    base.send("Tell me about LoRA.")
    s = _session(lora_engine)
    assert lora_engine.adapters() == ["first", "second"] and lora_engine.active_adapter() == "on"
    s.send("Tell me about LoRA.")
    run = run_compare(s, "adapter=off,on,first,second", Collect())
    off, on, first, second = (r.text for r in run.results)
    assert off == base.answers()[-1]  # the adapter layers disabled: the very computation of the base
    assert on == s.answers()[-1]  # both together, as loaded
    assert len({off, on, first, second}) == 4
    assert lora_engine.active_adapter() == "on"  # the compare put it back
    assert [a.settings["adapter"] for a in s.conversation.messages[-1].alternatives] == [
        "off",
        "on",
        "first",
        "second",
    ]


def test_switching_drops_the_kept_cache(lora_engine, plain_engine, out):
    """Another adapter, other keys and values: a turn after :adapter off equals the base model's."""
    base = _session(plain_engine)
    base.send("hello")
    base.send("and then?")
    s = _session(lora_engine)
    app = Repl(s, out)
    app.handle_line("hello")
    app.handle_line(":adapter off")
    assert "adapter: off (base model) (loaded: first, second)" in out.buf.getvalue()
    s.conversation.messages[-1] = base.conversation.messages[1]  # the same history as the base run
    s.send("and then?")
    assert s.answers()[-1] == base.answers()[-1]
    assert s.last_stats.reused_tokens == 0
    app.handle_line(":adapter second")
    app.handle_line(":conf")
    assert "adapter: second (loaded: first, second)" in out.buf.getvalue()
    app.handle_line(":adapter third")
    assert "error: no adapter 'third'; loaded: first, second (or off, on)" in out.buf.getvalue()
    lora_engine.set_adapter("on")
