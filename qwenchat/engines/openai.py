"""A remote engine: stream chat completions from any OpenAI-compatible server (vLLM, SGLang, llama.cpp, ...).

Standard library only (http.client), so no extra is needed. The HTTP exchange is this engine's job in the
shared turn (turn.py), on a thread of its own per turn; a set `cancel` (or Ctrl-C) shuts the socket down at
once and the turn ends with "interrupted".
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

from qwenchat.engines.api import Chunk, EngineError, GenerationRequest
from qwenchat.settings import COMMON, SettingsSchema
from qwenchat.turn import Job, Outcome, Turns

DEFAULT_TIMEOUT = 120.0  # seconds without a byte from the server before a turn fails
CONNECT_TIMEOUT = 10.0
API_KEY_ENVS = ("QWENCHAT_API_KEY", "OPENAI_API_KEY")
REMOTE_ONLY = "not available for a remote engine: the server applies the chat template and tokenizes"

# Settings the chat-completions API itself has a field for.
_STANDARD = ("do_sample", "temperature", "top_p", "max_new_tokens", "stop_strings")
# Sampling fields that vLLM, SGLang and llama.cpp's servers accept beyond the OpenAI API (llama.cpp spells
# repetition_penalty "repeat_penalty"; sending both reaches both).
EXTRA_FIELDS: dict[str, tuple[str, ...]] = {
    "top_k": ("top_k",),
    "min_p": ("min_p",),
    "repetition_penalty": ("repetition_penalty", "repeat_penalty"),
    "min_new_tokens": ("min_tokens",),
}
# Where each setting goes in the request body.
_BODY_FIELDS = {
    "temperature": ("temperature",),
    "top_p": ("top_p",),
    "max_new_tokens": ("max_tokens",),
    **EXTRA_FIELDS,
}
_FINISH = {
    "stop": "stop",
    "length": "length",
    "eos": "stop",
    "tool_calls": "stop",
    "function_call": "stop",
    "content_filter": "stop",
}
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
        self._turns = Turns("qwenchat-openai", own_threads=True)
        self._schema = SettingsSchema(
            "an OpenAI-compatible server",
            {k: COMMON[k] for k in (*_STANDARD, *EXTRA_FIELDS)},
            refused=self._refused_setting,
        )

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

    def settings_schema(self) -> SettingsSchema:
        return self._schema

    def _refused_setting(self, key: str) -> str | None:
        """A setting whose body fields this server refused with a 400: it is no longer sent."""
        fields = EXTRA_FIELDS.get(key)
        if fields and set(fields) <= self._rejected:
            return f"the server at {self.base_url} refused it"
        return None

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
        if s.get("do_sample") is False:
            body["temperature"] = 0.0  # greedy; the request has dropped the sampling knobs already
        for key, names in _BODY_FIELDS.items():
            if s.get(key) is not None:
                body.update(dict.fromkeys(names, s[key]))
        if request.seed is not None:
            body["seed"] = request.seed
        stop = s.get("stop_strings")
        if stop:
            body["stop"] = [stop] if isinstance(stop, str) else list(stop)
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
        return self._turns.stream(self._prepare, request, cancel)

    def _prepare(self, request: GenerationRequest) -> Job:
        """This engine's part of a turn: the HTTP exchange on its own thread. The prompt is unknown here,
        so think_open stays None and the renderer guesses from the output."""
        if self.model is None:
            self.connect()  # EngineError: the turn's error chunk
        exchange = _Exchange(self, request)
        return Job(
            exchange.run,
            decode=exchange.decode,
            flush=exchange.flush,
            abort=exchange.abort,
            stop_strings=None,  # the server cuts them
            wait=False,  # a reader stuck in connect holds nothing the next turn needs
        )


class _Exchange:
    """One turn's HTTP exchange: POST, then server-sent events read into the outcome and the turn's queue.
    A set `cancel` (or Ctrl-C) shuts the socket down from the consumer's thread, which wakes the reader."""

    def __init__(self, engine: OpenAIEngine, request: GenerationRequest) -> None:
        self.engine = engine
        self.request = request
        self.lock = threading.Lock()
        self.conn: http.client.HTTPConnection | None = None
        self.closed = self.aborted = False
        self.in_reasoning = False  # consumer side: inside a <think> block made of reasoning deltas
        self.done = False

    # -- the consumer's side ----------------------------------------------------------------------
    def decode(self, item: tuple[str, str]) -> str:
        reasoning, content = item
        text = ""
        if reasoning:
            # Wrapped in tags so the renderer's think-block display applies to remote models too.
            text += ("" if self.in_reasoning else "<think>") + reasoning
            self.in_reasoning = True
        if content:
            if self.in_reasoning:
                text += "</think>\n\n"
                self.in_reasoning = False
            text += content
        return text

    def flush(self) -> str:
        return "</think>" if self.in_reasoning else ""

    def abort(self) -> None:
        """Hang up from the consumer's thread: shutdown wakes a reader blocked in recv at once."""
        with self.lock:
            if self.conn is None or self.closed or self.aborted:
                return
            self.aborted = True
            sock = self.conn.sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    # -- the reader thread --------------------------------------------------------------------------
    def run(self, emit: Callable[[Any], None], outcome: Outcome, cancel: threading.Event) -> None:
        # A 400 that names optional fields (stream_options, top_k, ...) is retried without them; each retry
        # drops at least one more field, so this ends.
        while self._post(self.engine.build_body(self.request), emit, outcome, cancel):
            pass
        if outcome.error is None and outcome.finish is None and not cancel.is_set():
            where = f"{self.engine.endpoint.host}:{self.engine.endpoint.port}"
            if self.done:
                outcome.finish = "stop"  # [DONE] without a finish_reason
            else:
                outcome.error = f"the server at {where} ended the stream before the answer was complete"

    def _post(
        self, body: dict[str, Any], emit: Callable[[Any], None], outcome: Outcome, cancel: threading.Event
    ) -> bool:
        """One POST; True when the server refused optional fields and the request is worth sending again."""
        engine = self.engine
        phase = "connect"
        conn = engine.endpoint.connection(engine.connect_timeout)
        try:
            conn.connect()
            with self.lock:
                self.conn, self.closed, self.aborted = conn, False, False
                if cancel.is_set():
                    return False
            conn.sock.settimeout(engine.timeout)
            phase = "request"
            headers = {**engine._headers(), "Content-Type": "application/json"}
            payload = json.dumps(body).encode("utf-8")
            conn.request(
                "POST", engine.endpoint.base_path + "/chat/completions", body=payload, headers=headers
            )
            resp = conn.getresponse()
            phase = "body"
            if resp.status >= 400:
                return self._http_error(resp, body, outcome)
            if "json" in (resp.getheader("Content-Type") or ""):
                self._data(resp.read().decode("utf-8", errors="replace"), emit, outcome)
            else:
                for data in _events(resp):
                    if self._data(data, emit, outcome):
                        break
        except BaseException as exc:  # after a finish_reason the answer is whole: a hang-up is no error
            if not cancel.is_set() and outcome.finish is None and outcome.error is None:
                outcome.error = engine._transport_error(exc, phase=phase)
        finally:
            with self.lock:
                self.closed = True
            conn.close()
        return False

    def _http_error(self, resp: http.client.HTTPResponse, body: dict[str, Any], outcome: Outcome) -> bool:
        message = server_error_message(resp.read(_MAX_ERROR_BODY))
        named = [f for f in self.engine._optional_fields(body) if f in message]
        if resp.status == 400 and named:
            self.engine._rejected.update(named)
            return True
        outcome.error = f"the server answered {resp.status} {resp.reason}: {message}"
        return False

    def _data(self, value: str, emit: Callable[[Any], None], outcome: Outcome) -> bool:
        """One event's JSON: a streamed chunk or a whole completion. True when the answer has ended."""
        if value.strip() == "[DONE]":
            self.done = True
            return True
        try:
            data = json.loads(value)
        except ValueError:
            outcome.error = f"the server sent something that is not JSON: {_one_line(value, 120)}"
            return True
        if not isinstance(data, dict):
            return False
        if data.get("error"):  # vLLM and others report mid-stream failures as an error event
            outcome.error = "the server reported an error: " + server_error_message(value.encode())
            return True
        usage = data.get("usage")
        if isinstance(usage, dict):  # the server's counts, where it sends them
            outcome.prompt_tokens = int(usage.get("prompt_tokens") or 0)
            if usage.get("completion_tokens"):
                outcome.generated_tokens = int(usage["completion_tokens"])
            details = usage.get("prompt_tokens_details") or {}
            outcome.reused_tokens = int(details.get("cached_tokens") or 0) if isinstance(details, dict) else 0
        for choice in data.get("choices") or []:
            delta = choice.get("delta") or choice.get("message") or {}
            reasoning = delta.get("reasoning_content") or delta.get("reasoning")
            content = delta.get("content")
            if reasoning or content:
                emit((reasoning, content))
            if choice.get("finish_reason"):
                outcome.finish = _FINISH.get(choice["finish_reason"], "stop")
        if data.get("object") == "chat.completion":  # a server that ignored stream=True: the whole answer
            self.done = True
            return True
        return False


def _events(resp: http.client.HTTPResponse) -> Iterator[str]:
    """Server-sent events: `data:` lines joined until a blank line (or the end of the body)."""
    lines: list[str] = []
    while True:
        raw = resp.readline()
        if not raw:
            if lines:
                yield "\n".join(lines)
            return
        line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
        if not line:
            if lines:
                yield "\n".join(lines)
                lines = []
            continue
        if line.startswith("data:"):
            lines.append(line[5:].removeprefix(" "))
        # "event:", "id:", "retry:" and ":" comments (keep-alives) carry nothing a chat needs
