"""A scripted OpenAI-compatible server on 127.0.0.1 for tests: each test writes the answer to each chat
request (`server.script = streams(sse(delta("Hi", "stop")), sse(b"[DONE]"))`)."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


# -- the server ------------------------------------------------------------------------------
def sse(obj: Any) -> bytes:
    return b"data: " + (obj if isinstance(obj, bytes) else json.dumps(obj).encode()) + b"\n\n"


def delta(content: str | None = None, finish: str | None = None, **extra: Any) -> dict[str, Any]:
    d: dict[str, Any] = dict(extra)
    if content is not None:
        d["content"] = content
    return {"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": d, "finish_reason": finish}]}


class Scripted:
    """A tiny server on 127.0.0.1: `script(handler, body)` writes the answer to each chat request."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.script: Callable[[BaseHTTPRequestHandler, dict[str, Any]], None] = lambda h, b: None
        self.models = ["served-model", "other-model"]
        self.release = threading.Event()  # lets a handler that waits give up when the test ends
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                if self.path.endswith("/models"):
                    body = json.dumps({"object": "list", "data": [{"id": m} for m in outer.models]}).encode()
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                else:
                    self.send_error(404)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length))
                outer.requests.append(body)
                outer.headers.append(dict(self.headers))
                outer.script(self, body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


def start_stream(h: BaseHTTPRequestHandler, close: bool = True) -> None:
    h.send_response(200)
    h.send_header("Content-Type", "text/event-stream")
    h.send_header("Cache-Control", "no-cache")
    if close:
        h.send_header("Connection", "close")
    h.end_headers()
    h.close_connection = True


def json_reply(h: BaseHTTPRequestHandler, status: int, obj: Any) -> None:
    body = json.dumps(obj).encode()
    h.send_response(status)
    h.send_header("Content-Type", "application/json")
    h.send_header("Content-Length", str(len(body)))
    h.end_headers()
    h.wfile.write(body)


def streams(*events: bytes) -> Callable[[BaseHTTPRequestHandler, dict[str, Any]], None]:
    def script(h: BaseHTTPRequestHandler, body: dict[str, Any]) -> None:
        start_stream(h)
        for e in events:
            h.wfile.write(e)
            h.wfile.flush()

    return script


def prompt_logprobs_reply(
    tokens: list[tuple[int, str, float]], *, with_ids: bool = True, extra: int = 1
) -> Callable[[BaseHTTPRequestHandler, dict[str, Any]], None]:
    """A whole (non-streamed) chat completion with vLLM's `prompt_logprobs` for a prompt of `tokens` (id,
    text, logprob; the first gets None, as vLLM sends it), each with `extra` other candidates, and the prompt
    token ids when `with_ids`: what a scoring request gets from vLLM."""

    def entry(tid: int, text: str, lp: float) -> dict[str, Any]:
        out = {str(tid): {"logprob": lp, "rank": 1, "decoded_token": text}}
        for j in range(extra):
            out[str(900_000 + j)] = {"logprob": lp - 1.0 - j, "rank": 2 + j, "decoded_token": f"<alt{j}>"}
        return out

    body: dict[str, Any] = {
        "object": "chat.completion",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": "x"}, "finish_reason": "length"}
        ],
        "prompt_logprobs": [None] + [entry(*t) for t in tokens[1:]],
    }
    if with_ids:
        body["prompt_token_ids"] = [t[0] for t in tokens]

    def script(h: BaseHTTPRequestHandler, req: dict[str, Any]) -> None:
        json_reply(h, 200, body)

    return script
