"""What exactly answered: a fingerprint of the engine, the model's weights and the machine's numerics, kept in
session files and batch records, so that two runs whose answers differ can say whether they should not.

Answers depend on more than the conversation, settings and seed: other weights, another dtype, another
device, another thread count or library version, another CPU's kernels (AVX2 against AVX-512) round
differently. The weights are named by content: a SHA-256 of each weight file, computed once per file
(path, size and modification time) and remembered in the cache folder, so only the first run pays for it.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import platform
import threading
from importlib import metadata
from pathlib import Path
from typing import Any

from qwenchat.paths import cache_dir

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".gguf", ".pt", ".pth")


MEMO_ENTRIES = 256
_LOCK = threading.Lock()  # one reader at a time: a second asker waits, then finds it remembered


def _digest_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 22):
            h.update(block)
    return h.hexdigest()


def _memo_path() -> Path:
    return cache_dir() / "digests.json"


def file_sha256(path: str | os.PathLike[str]) -> str:
    """The file's SHA-256, remembered by (real path, size, mtime) so a file is read once."""
    with _LOCK:
        return _file_sha256(Path(path).resolve())


def _file_sha256(p: Path) -> str:
    st = p.stat()
    key = f"{p}|{st.st_size}|{st.st_mtime_ns}"
    memo_file = _memo_path()
    try:
        memo = json.loads(memo_file.read_text("utf-8"))
        if not isinstance(memo, dict):
            memo = {}
    except (OSError, ValueError):
        memo = {}
    if isinstance(memo.get(key), str):
        return memo[key]
    digest = _digest_file(p)
    memo[key] = digest
    for old in list(memo)[: max(len(memo) - MEMO_ENTRIES, 0)]:  # the oldest first: files long gone
        del memo[old]
    try:  # a best effort: a read-only cache folder costs a re-read next time, nothing else
        memo_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = memo_file.with_name(f".{memo_file.name}.{os.getpid()}")
        tmp.write_text(json.dumps(memo), "utf-8")
        os.replace(tmp, memo_file)
    except OSError:
        pass
    return digest


def weights_sha256(path: str | os.PathLike[str] | None) -> str | None:
    """A GGUF file's SHA-256, or for a model folder one over its weight files (name and SHA-256 of each);
    None when there is nothing local to read (a server's model)."""
    if path is None:
        return None
    p = Path(path)
    try:
        if p.is_file():
            return file_sha256(p)
        if p.is_dir():
            files = sorted(f for f in p.iterdir() if f.is_file() and f.suffix in WEIGHT_SUFFIXES)
            if not files:
                return None
            h = hashlib.sha256()
            for f in files:
                h.update(f"{f.name} {file_sha256(f)}\n".encode())
            return h.hexdigest()
    except OSError:
        return None
    return None


def revision(path: str | os.PathLike[str] | None) -> str | None:
    """The hub commit of a downloaded snapshot (its folder is named after it); None for other paths."""
    if path is None:
        return None
    p = Path(path)
    folder = p if p.is_dir() else p.parent
    return folder.name if folder.parent.name == "snapshots" else None


@functools.cache  # neither changes while the process runs; every autosave asks
def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


@functools.cache
def cpu() -> str:
    """The CPU's model name and its widest vector instructions: what decides which kernels run."""
    name, flags = "", set()
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and not name:
                name = value.strip()
            elif key.strip() == "flags" and not flags:
                flags = set(value.split())
    except OSError:
        pass
    name = name or platform.processor() or platform.machine()
    isa = [f for f in ("avx2", "avx512f", "amx_tile") if f in flags]
    return f"{name} ({', '.join(isa)})" if isa else name


def runtime(*packages: str) -> dict[str, Any]:
    """The library versions and the CPU, for an engine's fingerprint."""
    out: dict[str, Any] = {p.replace("-", "_"): _version(p) for p in packages}
    out["cpu"] = cpu()
    return out


def differences(a: dict[str, Any] | None, b: dict[str, Any] | None) -> list[str]:
    """The fields two fingerprints disagree on that can change answers, as `name: old -> new` lines; empty
    when either is unknown (a file from before fingerprints) or they agree."""
    if not a or not b:
        return []
    out = []
    for key in sorted(set(a) | set(b)):
        if a.get(key) == b.get(key):
            continue
        out.append(f"{key}: {_short(a.get(key))} -> {_short(b.get(key))}")
    return out


def _short(value: Any) -> str:
    text = "unknown" if value is None else str(value)
    return text[:12] if len(text) == 64 and all(c in "0123456789abcdef" for c in text) else text
