"""A batch file's `images` field: checked before anything runs, sent with the prompt, and the same answer as
the chat gives for the same image, settings and seed (reproducible); through the CLI in-process on the tiny
Qwen2-VL."""

from __future__ import annotations

import json

import pytest

from qwenchat.batch.inputs import BatchError, read_prompts
from qwenchat.chat.session import ChatSession
from qwenchat.images.load import read_image
from tests.batch.test_runner import qwenchat, records
from tests.images.conftest import vision_engine


def test_images_are_read_relative_to_the_prompt_file(tmp_path, images):
    prompts = tmp_path / "p.jsonl"
    prompts.write_text(json.dumps({"prompt": "what?", "images": [images["a"].name]}) + "\n")
    (p,) = read_prompts(prompts)
    (stored,) = p.messages[-1]["images"]
    assert stored["path"] == str(images["a"]) and stored["width"] == 80


@pytest.mark.parametrize(
    "images_field,expected",
    [("one.png", "list of image paths"), (["missing.png"], "no such file"), ([""], "list of image paths")],
)
def test_bad_images_stop_the_batch_before_it_runs(tmp_path, images_field, expected):
    prompts = tmp_path / "p.jsonl"
    prompts.write_text(json.dumps({"prompt": "what?", "images": images_field}) + "\n")
    with pytest.raises(BatchError) as err:
        read_prompts(prompts)
    assert "line 1" in str(err.value) and expected in str(err.value)


def test_a_batch_answers_with_the_image_as_the_chat_does(tiny_vl, tmp_path, images):
    engine = vision_engine(tiny_vl)
    made = (engine, {"model": "tiny-vl", "device": "cpu", "dtype": "f32", "extra": []})
    prompts, out = tmp_path / "p.jsonl", tmp_path / "r.jsonl"
    lines = [
        {"prompt": "what is it?", "images": [str(images["a"])], "settings": {"do_sample": True}},
        {"prompt": "what is it?", "images": [str(images["b"])], "settings": {"do_sample": True}},
    ]
    prompts.write_text("".join(json.dumps(x) + "\n" for x in lines))
    argv = ["batch", str(prompts), "-c", "tiny-vl", "--out", str(out), "--seeds", "7"]
    rc, _, err = qwenchat([*argv, "--max-new-tokens", "10", "--temperature", "1.0"], made)
    assert rc == 0, err
    recs = records(out)
    assert recs[0]["messages"][-1]["images"][0]["sha256"] == read_image(images["a"], "a").sha256
    assert recs[0]["answer"] != recs[1]["answer"]  # another image, another answer
    engine.reset()
    chat = ChatSession(engine)
    chat.settings.update({"max_new_tokens": 10, "temperature": 1.0, "do_sample": True})
    chat.settings.seed = 7
    chat.attach_images([read_image(images["b"], "b.png")])
    assert chat.send("what is it?").text == recs[1]["answer"]
