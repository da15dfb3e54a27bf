"""A prompt's `reference` answer: read from JSONL and CSV, placeholders filled, and scored into every record
of a batch (`ref_logprob`, `ref_ppl`) on the tiny random-weight Qwen2."""

from __future__ import annotations

import io
import json
import math

import pytest

from qwenchat.batch.inputs import BatchError, parse_csv, parse_jsonl
from qwenchat.batch.plan import plan_runs
from qwenchat.cli.app import main
from qwenchat.compare.variants import Variant
from qwenchat.environment import Environment
from qwenchat.settings import NEUTRAL


def test_reference_from_jsonl_and_csv():
    jsonl = parse_jsonl('{"prompt": "Capital of {{c}}?", "reference": "It is {{city}}."}\n"no reference"\n')
    assert [p.reference for p in jsonl] == ["It is {{city}}.", None]
    csv = parse_csv("prompt,reference,c\nCapital of {{c}}?,Paris.,France\nHi,,x\n")
    assert [p.reference for p in csv] == ["Paris.", None] and csv[0].variables == {"c": "France"}
    runs = plan_runs(
        jsonl, [{"c": "France", "city": "Paris"}], [Variant("")], [1], default_system=None,
        base_settings={}, schema=NEUTRAL,
    )  # fmt: skip
    assert runs[0].reference == "It is Paris." and runs[1].reference is None


@pytest.mark.parametrize("value", ['""', "3", '["a"]', '"  "'])
def test_a_bad_reference_is_one_line(value):
    with pytest.raises(BatchError, match="line 1: 'reference' must be non-empty text") as err:
        parse_jsonl(f'{{"prompt": "hi", "reference": {value}}}\n')
    assert "\n" not in str(err.value)


def test_batch_records_score_the_reference(tiny_model, tmp_path):
    from qwenchat.chat.session import ChatSession
    from qwenchat.engines.transformers.engine import TransformersEngine

    model, tok = tiny_model
    engine = TransformersEngine(model, tok, "tiny")
    made = (engine, {"model": "tiny", "device": "cpu", "dtype": "f32", "extra": []})
    prompts, out = tmp_path / "p.jsonl", tmp_path / "r.jsonl"
    reference = "The capital of France is Paris."
    prompts.write_text(
        json.dumps({"prompt": "Capital of France?", "reference": reference}) + "\n" + '"No reference."\n'
    )
    err = io.StringIO()
    env = Environment(
        stdin=io.StringIO(""),
        stdout=io.StringIO(),
        stderr=err,
        stdin_isatty=False,
        stdout_isatty=False,
        engine_factory=lambda args, renderer: made,
    )
    argv = ["batch", str(prompts), "-c", "tiny", "--out", str(out), "--max-new-tokens", "4", "--seeds", "1,2"]
    assert main(argv, env) == 0, err.getvalue()
    recs = [json.loads(line) for line in out.read_text().splitlines()]
    with_ref = [r for r in recs if r["prompt"] == "Capital of France?"]
    assert len(with_ref) == 2 and all("ref_logprob" not in r for r in recs if r not in with_ref)
    # the same number a chat gets for the same answer to the same prompt
    chat = ChatSession(engine)
    chat.conversation.add_user("Capital of France?")
    expected = chat.score(reference)
    for r in with_ref:
        assert r["ref_logprob"] == pytest.approx(expected.total, abs=1e-3)
        assert r["ref_ppl"] == pytest.approx(math.exp(-expected.total / r["ref_tokens"]), rel=1e-3)
        assert r["ref_tokens"] == len(tok(reference, add_special_tokens=False)["input_ids"])


def test_no_reference_is_scored_after_a_ctrl_c():
    from qwenchat.probs.score import reference_fields

    class Stopped:
        interrupts = 1  # the batch's SIGINT handler interrupted this run

        def score(self, answer: str):
            raise AssertionError("scored after a Ctrl-C")

    assert reference_fields(Stopped(), "Paris.") == {
        "ref_logprob": None,
        "ref_ppl": None,
        "ref_error": "interrupted",
    }
    assert reference_fields(Stopped(), None) == {}


def test_adapter_off_on_shows_how_a_fine_tune_moved_the_reference(tiny_dir, tmp_path):
    """`--grid adapter=off,on` with a reference: the records' ref_logprob differ, and `off` is the base
    model's own score of the reference."""
    peft = pytest.importorskip("peft", reason="LoRA adapters need peft (pip install 'qwenchat[lora]')")
    import torch
    from transformers import AutoModelForCausalLM

    from qwenchat.chat.session import ChatSession
    from qwenchat.engines.transformers.engine import TransformersEngine
    from qwenchat.models import loader
    from qwenchat.models.loader import LoadOptions

    model = AutoModelForCausalLM.from_pretrained(tiny_dir, dtype=torch.float32)
    peft_model = peft.get_peft_model(
        model, peft.LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"])
    )
    torch.manual_seed(1)
    with torch.no_grad():
        for name, weight in peft_model.named_parameters():
            if "lora_B" in name:
                weight.normal_(0.0, 0.5)  # fresh B matrices are zero and change nothing
    peft_model.save_pretrained(tmp_path / "tuned")
    options = LoadOptions(adapters=[str(tmp_path / "tuned")], cpu_only=True, dtype="float32")
    loaded = loader.load(loader.resolve(str(tiny_dir)), options)
    engine = TransformersEngine(loaded.model, loaded.tokenizer, loaded.name, adapters=loaded.adapters)
    made = (engine, {"model": "tiny", "device": "cpu", "dtype": "f32", "extra": []})

    reference = "LoRA adds small trainable matrices."
    prompts, out = tmp_path / "p.jsonl", tmp_path / "r.jsonl"
    prompts.write_text(json.dumps({"prompt": "What is LoRA?", "reference": reference}) + "\n")
    env = Environment(
        stdin=io.StringIO(""), stdout=io.StringIO(), stderr=(err := io.StringIO()), stdin_isatty=False,
        stdout_isatty=False, engine_factory=lambda args, renderer: made,
    )  # fmt: skip
    argv = ["batch", str(prompts), "-c", "tiny", "--out", str(out), "--grid", "adapter=off,on"]
    assert main([*argv, "--max-new-tokens", "3"], env) == 0, err.getvalue()
    by_adapter = {r["variant_overrides"]["adapter"]: r for r in map(json.loads, out.read_text().splitlines())}
    assert by_adapter["off"]["ref_logprob"] != by_adapter["on"]["ref_logprob"]

    base = loader.load(loader.resolve(str(tiny_dir)), LoadOptions(cpu_only=True, dtype="float32"))
    chat = ChatSession(TransformersEngine(base.model, base.tokenizer, base.name))
    chat.conversation.add_user("What is LoRA?")
    assert by_adapter["off"]["ref_logprob"] == pytest.approx(chat.score(reference).total, abs=1e-3)
