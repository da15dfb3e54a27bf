"""`qwenchat -c DIR --image PATH` in-process, through the real engine factory: the tiny Qwen2-VL directory is
loaded as a vision model, the image goes with the first message, and a pipe gets no thumbnail."""

from __future__ import annotations

import io

from qwenchat.cli.app import main
from qwenchat.environment import Environment


def run(argv: list[str], stdin: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    env = Environment(
        stdin=io.StringIO(stdin), stdout=out, stderr=err, stdin_isatty=False, stdout_isatty=False
    )
    rc = main(argv, env)
    return rc, out.getvalue(), err.getvalue()


def test_image_flag_on_a_vision_model_directory(tiny_vl_dir, images):
    argv = [
        "-c",
        str(tiny_vl_dir),
        "--cpu",
        "--dtype",
        "float32",
        "--image",
        str(images["a"]),
        "--no-autosave",
    ]
    rc, out, err = run([*argv, "--max-new-tokens", "3"], "what is it?\n:tokens\n")
    assert rc == 0, err
    assert "image " in err and "80x60 PNG" in err and "tokens)" in err and "▀" not in err + out
    assert "image tokens: 1 image" in err


def test_image_flag_on_a_text_model_is_one_line(tiny_dir, images):
    argv = ["-c", str(tiny_dir), "--cpu", "--image", str(images["a"]), "--no-autosave"]
    rc, out, err = run(argv, "hi\n")
    assert rc == 2 and "takes text only" in err and "Traceback" not in err
