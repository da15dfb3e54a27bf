"""Loading a GGUF with llama-cpp-python safely: without the AMX weight buffers where they crash."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any


def cpu_has_amx() -> bool:
    """Intel AMX (Sapphire Rapids and later): llama.cpp's AMX kernels segfault on some of these machines
    (ggml-org/llama.cpp#20824, a native build's first decode crashes in ggml_backend_amx_mul_mat)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            return any(line.startswith("flags") and " amx_int8" in line for line in f)
    except OSError:
        return False


def built_with_amx(llama_cpp: Any) -> bool:
    """Whether the installed llama.cpp has AMX kernels (a native build on an AMX machine has them; a
    portable build does not). Unknown layouts count as yes, the safe side."""
    lib_dir = Path(llama_cpp.__file__).parent / "lib"
    libs = sorted(lib_dir.glob("libggml-cpu*.so*"))
    if not libs:
        return True
    try:
        return any(b"ggml_backend_amx_mul_mat" in lib.read_bytes() for lib in libs)
    except OSError:
        return True


def amx_risk(llama_cpp: Any) -> bool:
    """True where llama.cpp's AMX weight buffers would be used: then the engine loads without them."""
    return cpu_has_amx() and built_with_amx(llama_cpp)


_LOAD_LOCK = threading.Lock()


def _load_llama(llama_cpp: Any, kwargs: dict[str, Any], *, extra_buffers: bool) -> Any:
    """Llama(**kwargs); without llama.cpp's extra weight buffers (AMX, repacked) when told so.

    `Llama` exposes no switch for llama_model_params.use_extra_bufts, but it starts from
    `llama_model_default_params()`, so that is wrapped for the duration of the load.
    """
    if extra_buffers:
        return llama_cpp.Llama(**kwargs)
    low = llama_cpp.llama_cpp
    original = low.llama_model_default_params

    def params() -> Any:
        p = original()
        if hasattr(p, "use_extra_bufts"):
            p.use_extra_bufts = False
        return p

    with _LOAD_LOCK:
        low.llama_model_default_params = params
        try:
            return llama_cpp.Llama(**kwargs)
        finally:
            low.llama_model_default_params = original


def physical_cores(root: Path = Path("/sys/devices/system/cpu")) -> int:
    """The cores this process may run on, counting SMT siblings once. llama-cpp-python's default decode
    thread count is os.cpu_count() // 2 (it assumes two hardware threads per core): on a machine without
    SMT that leaves half the cores idle, and on this project's 2-core machine halved decode speed."""
    try:
        cpus = sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return max(1, (os.cpu_count() or 2) // 2)
    cores = set()
    for cpu in cpus:
        topology = root / f"cpu{cpu}" / "topology"
        try:
            package = (topology / "physical_package_id").read_text().strip()
            core = (topology / "core_id").read_text().strip()
        except OSError:
            return max(1, len(cpus) // 2)  # topology unknown: llama-cpp-python's own guess
        cores.add((package, core))
    return max(1, len(cores))
