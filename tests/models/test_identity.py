"""Fingerprints: weights named by content (remembered per file), the CPU and libraries, and the lines that say
how two setups differ."""

from __future__ import annotations

import hashlib
import os

import pytest

from qwenchat.models import identity


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("QWENCHAT_CACHE_DIR", str(tmp_path / "cache"))


def test_a_files_sha256_is_read_once_and_again_when_the_file_changes(tmp_path, monkeypatch):
    f = tmp_path / "model.gguf"
    f.write_bytes(b"weights" * 1000)
    assert identity.file_sha256(f) == hashlib.sha256(b"weights" * 1000).hexdigest()
    reads: list[str] = []
    real = identity._digest_file
    monkeypatch.setattr(identity, "_digest_file", lambda p: reads.append(p.name) or real(p))
    identity.file_sha256(f)
    assert reads == []  # remembered
    f.write_bytes(b"other weights")
    os.utime(f, ns=(1, 1))  # another size and mtime: read again
    assert identity.file_sha256(f) == hashlib.sha256(b"other weights").hexdigest() and reads == ["model.gguf"]


def test_a_folder_is_named_by_its_weight_files_only(tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"a")
    (tmp_path / "config.json").write_text("{}")
    first = identity.weights_sha256(tmp_path)
    (tmp_path / "README.md").write_text("notes")
    assert identity.weights_sha256(tmp_path) == first
    (tmp_path / "model.safetensors").write_bytes(b"b")
    assert identity.weights_sha256(tmp_path) != first
    assert identity.weights_sha256(tmp_path / "missing") is None and identity.weights_sha256(None) is None


def test_revision_is_the_snapshot_folder_of_a_hub_download(tmp_path):
    snap = tmp_path / "models--Qwen--x" / "snapshots" / "abc123"
    snap.mkdir(parents=True)
    assert identity.revision(snap) == "abc123"
    assert identity.revision(tmp_path) is None and identity.revision(None) is None


def test_runtime_names_the_libraries_and_the_cpu():
    rt = identity.runtime("torch", "no-such-package-here")
    assert rt["torch"] and rt["no_such_package_here"] is None and rt["cpu"]


def test_differences_name_each_field_that_changed():
    a = {"engine": "transformers", "dtype": "bfloat16", "weights_sha256": "a" * 64, "threads": 2}
    b = {"engine": "transformers", "dtype": "float32", "weights_sha256": "b" * 64, "threads": 2}
    assert identity.differences(a, b) == [
        "dtype: bfloat16 -> float32",
        "weights_sha256: aaaaaaaaaaaa -> bbbbbbbbbbbb",
    ]
    assert identity.differences(a, dict(a)) == []
    assert (
        identity.differences(None, b) == [] and identity.differences(a, {}) == []
    )  # unknown: nothing to say
