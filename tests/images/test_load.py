"""Reading image files: every format taken, and each bad file refused with one line (nothing added)."""

from __future__ import annotations

import base64
import hashlib
import zlib

import pytest

from qwenchat.images import load
from qwenchat.images.datauri import data_uri
from qwenchat.images.load import ImageError, looks_like_image_path, pixels, read_image, status
from qwenchat.images.ref import ImageRef
from qwenchat.images.thumbnail import half_blocks
from tests.images.conftest import make_image


@pytest.mark.parametrize("kind,fmt", [("a", "PNG"), ("jpeg", "JPEG"), ("webp", "WEBP"), ("gif", "GIF")])
def test_each_format_is_read_with_its_size_pixels_and_hash(images, kind, fmt):
    path = images[kind]
    ref = read_image(path, path.name)
    assert (ref.format, ref.width, ref.height) == (fmt, 80, 60)
    assert ref.bytes == path.stat().st_size
    assert ref.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert pixels(ref).mode == "RGB" and pixels(ref).size == (80, 60)
    assert ImageRef.from_dict(ref.to_dict()) == ref


def test_an_animated_gif_gives_its_first_frame(tmp_path):
    from PIL import Image

    frames = [Image.new("RGB", (8, 8), c) for c in ((255, 0, 0), (0, 0, 255))]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0)
    ref = read_image(path, "anim.gif")
    assert pixels(ref).getpixel((0, 0))[0] > 200  # red, the first frame


def _bad(tmp_path, name: str, data: bytes):
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_hostile_and_bad_files_get_one_line(tmp_path, images):
    png = images["a"].read_bytes()
    cases = {
        "truncated": _bad(tmp_path, "cut.png", png[: len(png) // 2]),
        "text named .png": _bad(tmp_path, "notes.png", b"just some text\n"),
        "empty": _bad(tmp_path, "empty.png", b""),
        "missing": tmp_path / "nope.png",
        "directory": tmp_path,
    }
    for what, path in cases.items():
        with pytest.raises(ImageError) as err:
            read_image(path, path.name)
        line = str(err.value)
        assert "\n" not in line and line, what


def test_a_decompression_bomb_is_refused_before_it_is_decoded(tmp_path):
    """A PNG whose header claims 50,000 x 50,000 pixels (a few hundred bytes on disk)."""
    import struct

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", 50_000, 50_000, 8, 2, 0, 0, 0)
    data = zlib.compress(b"\0" * 1000)
    bomb = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b"")
    path = _bad(tmp_path, "bomb.png", bomb)
    with pytest.raises(ImageError, match="too many pixels"):
        read_image(path, "bomb.png")


def test_too_large_a_file_is_refused(images, monkeypatch):
    monkeypatch.setattr(load, "MAX_IMAGE_BYTES", 100)
    with pytest.raises(ImageError, match="too large"):
        read_image(images["a"], "a.png")


def test_status_says_when_the_file_changed_or_vanished(images):
    ref = read_image(images["a"], "a.png")
    assert status(ref) is None
    make_image(images["a"], 99)
    assert "changed" in status(ref)
    images["a"].unlink()
    assert "gone" in status(ref)


def test_a_changed_file_is_never_read_as_the_old_image(images, monkeypatch):
    ref = read_image(images["a"], "a.png")
    monkeypatch.setattr(load, "_decoded", type(load._decoded)())  # nothing kept in memory
    make_image(images["a"], 99)
    with pytest.raises(ImageError, match="changed"):
        pixels(ref)
    with pytest.raises(ImageError, match="changed"):
        data_uri(ref)


def test_data_uri_carries_the_files_own_bytes(images):
    ref = read_image(images["jpeg"], "c.jpg")
    uri = data_uri(ref)
    head, _, body = uri.partition(",")
    assert head == "data:image/jpeg;base64"
    assert base64.b64decode(body) == images["jpeg"].read_bytes()


def test_thumbnail_cells_are_two_pixel_rows_per_text_row(images):
    ref = read_image(images["a"], "a.png")
    cells = half_blocks(pixels(ref), width=20)
    assert len(cells[0]) == 20 and len(cells) == round(60 * 20 / 80 / 2)
    assert all(len(c) == 2 and len(c[0]) == 3 for row in cells for c in row)


def test_an_image_path_alone_is_recognised(images, tmp_path):
    assert looks_like_image_path(str(images["a"]))
    assert looks_like_image_path(f"'{images['jpeg']}'")  # as a terminal quotes a dropped file
    assert not looks_like_image_path(f"look at {images['a']}")
    assert not looks_like_image_path(str(tmp_path / "missing.png"))
    assert not looks_like_image_path("hello")


def test_stored_images_are_read_strictly():
    good = {"path": "/x.png", "sha256": "0" * 64, "bytes": 1, "width": 1, "height": 1, "format": "PNG"}
    assert ImageRef.from_dict(good).path == "/x.png"
    for bad in ({**good, "sha256": "zz"}, {**good, "bytes": -1}, {**good, "width": "1"}, "x", {"path": "/x"}):
        with pytest.raises(ValueError):
            ImageRef.from_dict(bad)
