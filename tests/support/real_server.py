"""A real OpenAI-compatible server for tests: `python -m llama_cpp.server` on the demo GGUF, on 127.0.0.1."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

from qwenchat.engines.api import EngineError
from qwenchat.engines.openai.engine import OpenAIEngine


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


SERVER_WITHOUT_EXTRA_BUFFERS = """
import runpy, sys
import llama_cpp.llama_cpp as C
original = C.llama_model_default_params
def params():
    p = original()
    p.use_extra_bufts = False
    return p
C.llama_model_default_params = params
sys.argv[0] = "llama_cpp.server"
runpy.run_module("llama_cpp.server", run_name="__main__")
"""


class RealServer:
    """`python -m llama_cpp.server` on the demo GGUF, bound to 127.0.0.1, killed in the finalizer."""

    def __init__(self, gguf: str, log_path: str, extra_args: tuple[str, ...] = ()) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self.log = open(log_path, "wb")
        args = [
            "--model",
            gguf,
            "--model_alias",
            "demo",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--n_ctx",
            "2048",
            "--n_threads",
            "1",
            "--verbose",
            "False",
            *extra_args,
        ]
        cmd = [sys.executable, "-m", "llama_cpp.server", *args]
        import llama_cpp

        from qwenchat.engines.llamacpp.load import amx_risk

        if amx_risk(llama_cpp):  # the server would segfault in llama.cpp's AMX kernels: load without them
            cmd = [sys.executable, "-c", SERVER_WITHOUT_EXTRA_BUFFERS, *args]
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 120
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"llama_cpp.server exited with {self.proc.returncode}; see {log_path}")
            try:
                OpenAIEngine(self.url, timeout=2).list_models()
                return
            except EngineError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"llama_cpp.server did not start in 120 s; see {log_path}") from None
                time.sleep(0.3)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)  # its own session: nothing else is in the group
            self.proc.wait(10)
        self.log.close()
