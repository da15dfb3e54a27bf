"""A remote engine: stream chat completions from any OpenAI-compatible server (vLLM, SGLang, llama.cpp, ...).

Standard library only (http.client), so no extra is needed. The HTTP exchange runs in a reader thread
that hands server-sent events to the consumer through a queue; the consumer polls the queue briefly, so a
set `cancel` (or Ctrl-C) shuts the socket down at once and the turn ends with "interrupted".
"""

from __future__ import annotations

import http.client
import json
import os
import queue
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

from qwenchat.engines.api import Chunk, EngineError, GenerationRequest, TurnStats, changes_output

DEFAULT_TIMEOUT = 120.0  # seconds without a byte from the server before a turn fails
CONNECT_TIMEOUT = 10.0
API_KEY_ENVS = ("QWENCHAT_API_KEY", "OPENAI_API_KEY")
REMOTE_ONLY = "not available for a remote engine: the server applies the chat template and tokenizes"

# Settings the chat-completions API itself has a field for.
_STANDARD = {"temperature", "top_p", "max_new_tokens", "stop_strings", "do_sample"}
# Sampling fields that vLLM, SGLang and llama.cpp's servers accept beyond the OpenAI API (llama.cpp spells
# repetition_penalty "repeat_penalty"; sending both reaches both).
EXTRA_FIELDS: dict[str, tuple[str, ...]] = {
    "top_k": ("top_k",),
    "min_p": ("min_p",),
    "repetition_penalty": ("repetition_penalty", "repeat_penalty"),
    "min_new_tokens": ("min_tokens",),
}
# Values that change nothing, so a setting left at them is not worth an "ignored" notice.
_FINISH = {
    "stop": "stop",
    "length": "length",
    "eos": "stop",
    "tool_calls": "stop",
    "function_call": "stop",
    "content_filter": "stop",
}
_END = object()
_POLL_S = 0.05
_MAX_ERROR_BODY = 64 * 1024


def _one_line(text: str, limit: int = 300) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def server_error_message(body: bytes) -> str:
    """The human part of an error body: OpenAI's {"error": {"message"}}, FastAPI's {"detail"}, or the text."""
    text = body.decode("utf-8", errors="replace").strip()
    try:
        data = json.loads(text)
    except ValueError:
        return _one_line(text)
    if isinstance(data, dict):
        for key in ("error", "detail", "message"):
            value = data.get(key)
            if isinstance(value, dict):
                value = value.get("message") or value.get("msg") or json.dumps(value)
            elif isinstance(value, list):  # FastAPI validation errors
                value = "; ".join(str(v.get("msg", v)) if isinstance(v, dict) else str(v) for v in value)
            if value:
                return _one_line(str(value))
    return _one_line(text)


class _Endpoint:
    """Where the server is: scheme, host, port and the API base path (".../v1")."""

    def __init__(self, base_url: str) -> None:
        url = base_url.strip()
        if "://" not in url:
            url = "http://" + url
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise EngineError(f"not an http(s) URL: {base_url!r}")
        self.scheme = parts.scheme
        self.host = parts.hostname
        try:
            self.port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:
            raise EngineError(f"bad port in {base_url!r}") from None
        path = parts.path.rstrip("/")
        # "http://host:8000" means the usual /v1; a path given explicitly is kept as it is.
        self.base_path = path or "/v1"
        self.url = f"{self.scheme}://{parts.netloc}{self.base_path}"

    def connection(self, connect_timeout: float) -> http.client.HTTPConnection:
        if self.scheme == "https":
            return http.client.HTTPSConnection(
                self.host, self.port, timeout=connect_timeout, context=ssl.create_default_context()
            )
        return http.client.HTTPConnection(self.host, self.port, timeout=connect_timeout)


class OpenAIEngine:
    """The REPL's Engine protocol over HTTP. Prompt rendering and token counting stay on the server."""

    def __init__(
        self,
        base_url: str,
        model: str | None = None,
        api_key: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        connect_timeout: float = CONNECT_TIMEOUT,
    ) -> None:
        self.endpoint = _Endpoint(base_url)
        self.base_url = self.endpoint.url
        self.model = model
        self.api_key = (
            api_key
            if api_key is not None
            else next((os.environ[k] for k in API_KEY_ENVS if os.environ.get(k)), None)
        )
        self.timeout = timeout
        self.connect_timeout = min(connect_timeout, timeout)
        self.served_models: list[str] | None = None  # filled by connect()
        self._rejected: set[str] = set()  # optional body fields this server refused with a 400

    @property
    def name(self) -> str:
        return self.model or "remote model"

    # -- facts the server keeps to itself ----------------------------------------------------
    @property
    def context_window(self) -> int | None:
        return None

    def default_settings(self) -> dict[str, Any]:
        return {}  # the server's own defaults apply to whatever the user does not set

    def reset(self) -> None:
        pass  # the server keeps (or not) its own prefix cache; there is nothing to forget here

    def render_prompt(self, request: GenerationRequest) -> str:
        raise NotImplementedError(f"the rendered prompt is {REMOTE_ONLY}")

    def count_tokens(self, request: GenerationRequest) -> int:
        raise NotImplementedError(f"token counting is {REMOTE_ONLY}")

    def ignored_settings(self, settings: dict[str, Any]) -> list[str]:
        """The keys of `settings` this engine cannot pass on (or the server refused), for a notice."""
        out = []
        for key, value in settings.items():
            if not changes_output(key, value):
                continue
            if key in _STANDARD or key == "seed":
                continue
            if key in EXTRA_FIELDS and not set(EXTRA_FIELDS[key]) <= self._rejected:
                continue
            out.append(key)
        return sorted(out)

    # -- HTTP --------------------------------------------------------------------------------
    def _headers(self) -> dict[str, str]:
        headers = {"Accept": "text/event-stream, application/json", "User-Agent": "qwenchat"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        return headers

    def list_models(self) -> list[str]:
        """GET /models: the ids the server serves. EngineError (one line) on any failure."""
        conn = self.endpoint.connection(self.connect_timeout)
        try:
            conn.request("GET", self.endpoint.base_path + "/models", headers=self._headers())
            resp = conn.getresponse()
            body = resp.read(_MAX_ERROR_BODY if resp.status >= 400 else None)
        except Exception as exc:
            raise EngineError(self._transport_error(exc, phase="connect")) from None
        finally:
            conn.close()
        if resp.status >= 400:
            raise EngineError(
                f"{self.base_url}/models answered {resp.status} {resp.reason}: {server_error_message(body)}"
            )
        try:
            data = json.loads(body)
            return [str(m["id"]) for m in data["data"]]
        except (ValueError, KeyError, TypeError):
            raise EngineError(f"{self.base_url}/models did not answer with a model list") from None

    def connect(self) -> list[str]:
        """Check the server answers and pick the first served model when none was named; raise EngineError."""
        self.served_models = self.list_models()
        if self.model is None:
            if not self.served_models:
                raise EngineError(f"{self.base_url} serves no models")
            self.model = self.served_models[0]
        return self.served_models

    def _transport_error(self, exc: BaseException, *, phase: str) -> str:
        """One line for a failure in a phase: "connect", "request" (awaiting the answer) or "body"."""
        where = f"{self.endpoint.host}:{self.endpoint.port}"
        if isinstance(exc, ConnectionRefusedError):
            return f"cannot connect to {where}: connection refused (is the server running?)"
        if isinstance(exc, socket.gaierror):
            return f"cannot resolve host {self.endpoint.host!r}"
        if isinstance(exc, TimeoutError | socket.timeout):
            if phase == "connect":
                return f"cannot connect to {where}: no answer within {self.connect_timeout:g} s"
            if phase == "request":
                return f"the server at {where} did not answer within {self.timeout:g} s"
            return f"the server at {where} sent nothing for {self.timeout:g} s"
        if isinstance(exc, ssl.SSLError):
            return f"TLS error talking to {where}: {_one_line(str(exc), 200)}"
        if isinstance(
            exc,
            http.client.RemoteDisconnected
            | ConnectionResetError
            | BrokenPipeError
            | http.client.IncompleteRead,
        ):
            when = "mid-answer" if phase == "body" else "before answering"
            return f"the server at {where} closed the connection {when}"
        name = type(exc).__name__
        detail = _one_line(str(exc), 200)
        return f"{name} talking to {where}: {detail}" if detail else f"{name} talking to {where}"

    def build_body(self, request: GenerationRequest) -> dict[str, Any]:
        """The chat-completions request for this turn; fields the server refused before are left out."""
        s = request.settings
        body: dict[str, Any] = {
            "model": self.model,
            "messages": request.messages,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        greedy = s.get("do_sample") is False or s.get("temperature") == 0
        if greedy:
            body["temperature"] = 0.0  # the sampling knobs below mean nothing without sampling
        else:
            for key in ("temperature", "top_p"):
                if s.get(key) is not None:
                    body[key] = s[key]
        if s.get("max_new_tokens"):
            body["max_tokens"] = s["max_new_tokens"]
        if request.seed is not None:
            body["seed"] = request.seed
        stop = s.get("stop_strings")
        if stop:
            body["stop"] = [stop] if isinstance(stop, str) else list(stop)
        for key, fields in EXTRA_FIELDS.items():
            value = s.get(key)
            if not changes_output(key, value) or (greedy and key != "min_new_tokens"):
                continue
            for field_name in fields:
                body[field_name] = value
        if request.continue_final:
            # vLLM and SGLang continue the last assistant message with these; other servers ignore them.
            body["add_generation_prompt"] = False
            body["continue_final_message"] = True
        for field_name in self._rejected:
            body.pop(field_name, None)
        return body

    def _optional_fields(self, body: dict[str, Any]) -> set[str]:
        required = {"model", "messages", "stream", "temperature", "top_p", "max_tokens", "seed", "stop"}
        return set(body) - required

    # -- one turn ----------------------------------------------------------------------------
    def stream(self, request: GenerationRequest, cancel: threading.Event) -> Iterator[Chunk]:
        t0 = time.perf_counter()
        if self.model is None:
            try:
                self.connect()
            except EngineError as exc:
                yield _error_chunk(str(exc), t0)
                return
        # Opens the answer before a slow server's first token; the prompt is unknown here, so think_open
        # stays None and the renderer guesses from the output.
        yield Chunk()
        # A 400 that names optional fields (stream_options, top_k, ...) is retried without them; each retry
        # drops at least one more field, so this ends.
        while True:
            retry: list[str] = []
            yield from self._turn(self.build_body(request), cancel, t0, retry)
            if not retry:
                return

    def _turn(
        self, body: dict[str, Any], cancel: threading.Event, t0: float, retry: list[str]
    ) -> Iterator[Chunk]:
        q: queue.Queue = queue.Queue()
        box: dict[str, Any] = {}
        lock = threading.Lock()
        payload = json.dumps(body).encode("utf-8")
        reader = threading.Thread(
            target=self._read, args=(payload, q, box, lock, cancel), name="qwenchat-openai", daemon=True
        )
        reader.start()

        deltas = 0
        t_first: float | None = None
        in_reasoning = False
        finish: str | None = None
        error: str | None = None
        usage: dict[str, Any] | None = None
        done = False
        try:
            while True:
                if cancel.is_set():
                    _abort(box, lock)
                    break
                try:
                    item = q.get(timeout=_POLL_S)
                except queue.Empty:
                    continue
                except KeyboardInterrupt:  # Ctrl-C landed here rather than in the caller: same meaning
                    cancel.set()
                    continue
                if item is _END:
                    break
                kind, value = item
                if kind == "http_error":
                    status, reason, raw = value
                    message = server_error_message(raw)
                    named = [f for f in self._optional_fields(body) if f in message]
                    if status == 400 and named:
                        self._rejected.update(named)
                        retry.extend(named)
                        return
                    error = f"the server answered {status} {reason}: {message}"
                    break
                if kind == "exc":
                    # After a finish_reason the answer is whole: a server that then hangs up is no error.
                    if not cancel.is_set() and finish is None:
                        error = self._transport_error(value[0], phase=value[1])
                    break
                if kind == "done":
                    done = True
                    break
                if kind == "eof":
                    break
                # kind == "data": one JSON object, a streamed chunk or a whole (non-streamed) completion
                try:
                    data = json.loads(value)
                except ValueError:
                    error = f"the server sent something that is not JSON: {_one_line(value, 120)}"
                    break
                if not isinstance(data, dict):
                    continue
                if data.get("error"):  # vLLM and others report mid-stream failures as an error event
                    error = "the server reported an error: " + server_error_message(value.encode())
                    break
                if isinstance(data.get("usage"), dict):
                    usage = data["usage"]
                for choice in data.get("choices") or []:
                    delta = choice.get("delta") or choice.get("message") or {}
                    text = ""
                    reasoning = delta.get("reasoning_content") or delta.get("reasoning")
                    content = delta.get("content")
                    if reasoning:
                        # Wrapped in tags so the renderer's think-block display applies to remote models too.
                        text += ("" if in_reasoning else "<think>") + reasoning
                        in_reasoning = True
                    if content:
                        if in_reasoning:
                            text += "</think>\n\n"
                            in_reasoning = False
                        text += content
                    if reasoning or content:
                        deltas += 1
                        if t_first is None:
                            t_first = time.perf_counter()
                    if text:
                        yield Chunk(text=text, tokens=deltas)
                    if choice.get("finish_reason"):
                        finish = _FINISH.get(choice["finish_reason"], "stop")
                if data.get("object") == "chat.completion":
                    done = True  # a server that ignored stream=True sent the whole answer at once
                    break
        finally:
            if reader.is_alive():  # cancelled, failed, or the caller stopped listening: hang up
                _abort(box, lock)
        t_end = time.perf_counter()

        if in_reasoning:
            yield Chunk(text="</think>", tokens=deltas)
        if error is None and cancel.is_set():
            reason = "interrupted"
        elif error is not None:
            reason = "error"
        elif finish is not None:
            reason = finish  # some servers close without [DONE] once the answer is complete
        elif done:
            reason = "stop"
        else:
            reason, error = (
                "error",
                f"the server at {self.endpoint.host}:{self.endpoint.port} ended the "
                "stream before the answer was complete",
            )
        generated, prompt, reused = deltas, 0, 0
        if usage is not None:  # the server's counts, where it sends them
            prompt = int(usage.get("prompt_tokens") or 0)
            generated = int(usage.get("completion_tokens") or deltas)
            details = usage.get("prompt_tokens_details") or {}
            reused = int(details.get("cached_tokens") or 0) if isinstance(details, dict) else 0
        stats = TurnStats.timed(
            prompt_tokens=prompt,
            reused_tokens=reused,
            generated_tokens=generated,
            t0=t0,
            t_first=t_first,
            t_end=t_end,
            finish_reason=reason,
        )
        yield Chunk(tokens=generated, finish_reason=reason, stats=stats, error=error)

    def _read(
        self,
        payload: bytes,
        q: queue.Queue,
        box: dict[str, Any],
        lock: threading.Lock,
        cancel: threading.Event,
    ) -> None:
        """The reader thread: POST, then turn the response into ("data", json-text) items on the queue."""
        phase = "connect"
        conn = self.endpoint.connection(self.connect_timeout)
        try:
            conn.connect()
            with lock:
                box["conn"] = conn
                if cancel.is_set():
                    return
            conn.sock.settimeout(self.timeout)
            phase = "request"
            headers = {**self._headers(), "Content-Type": "application/json"}
            conn.request("POST", self.endpoint.base_path + "/chat/completions", body=payload, headers=headers)
            resp = conn.getresponse()
            phase = "body"
            if resp.status >= 400:
                q.put(("http_error", (resp.status, resp.reason, resp.read(_MAX_ERROR_BODY))))
                return
            if "json" in (resp.getheader("Content-Type") or ""):
                q.put(("data", resp.read().decode("utf-8", errors="replace")))
                return
            _read_events(resp, q)
        except BaseException as exc:  # reported to the consumer, who decides whether it matters
            q.put(("exc", (exc, phase)))
        finally:
            with lock:
                box["closed"] = True
            conn.close()
            q.put(_END)


def _read_events(resp: http.client.HTTPResponse, q: queue.Queue) -> None:
    """Server-sent events: `data:` lines joined until a blank line; `[DONE]` ends the stream."""
    lines: list[str] = []
    while True:
        raw = resp.readline()
        if not raw:
            if lines:
                q.put(("data", "\n".join(lines)))
            q.put(("eof", None))
            return
        line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
        if not line:
            if lines:
                text = "\n".join(lines)
                lines = []
                if text.strip() == "[DONE]":
                    q.put(("done", None))
                    return
                q.put(("data", text))
            continue
        if line.startswith("data:"):
            lines.append(line[5:].removeprefix(" "))
        # "event:", "id:", "retry:" and ":" comments (keep-alives) carry nothing a chat needs


def _abort(box: dict[str, Any], lock: threading.Lock) -> None:
    """Hang up from the consumer's thread: shutdown wakes a reader blocked in recv at once."""
    with lock:
        conn = box.get("conn")
        if conn is None or box.get("closed") or box.get("aborted"):
            return
        box["aborted"] = True
        sock = conn.sock
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def _error_chunk(message: str, t0: float) -> Chunk:
    elapsed = time.perf_counter() - t0
    stats = TurnStats(finish_reason="error", ttft_s=elapsed, total_s=elapsed)
    return Chunk(finish_reason="error", error=message, stats=stats)
