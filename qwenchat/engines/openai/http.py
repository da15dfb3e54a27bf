"""The HTTP side of the OpenAI-compatible engine: where the server is, its error bodies, and one turn's
exchange (POST, then server-sent events), which runs as the engine's job in the shared turn (turn.py)."""

from __future__ import annotations

import base64
import http.client
import json
import re
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from typing import Any, Protocol
from urllib.parse import unquote, urljoin, urlsplit

from qwenchat.engines.api import EngineError, GenerationRequest
from qwenchat.engines.job import Outcome
from qwenchat.engines.openai.events import MalformedEvent, Usage, one_line, parse_event, server_error_message
from qwenchat.tools.calls import DeltaAssembler


class Client(Protocol):
    """What an exchange needs of the engine that started it (OpenAIEngine is one)."""

    endpoint: Endpoint
    timeout: float
    connect_timeout: float
    _rejected: set[str]
    schema_form: str  # how a JSON schema is sent: "json_schema" or "json_object"
    system_fingerprint: str | None  # the last one the server sent

    def build_body(self, request: GenerationRequest) -> dict[str, Any]: ...

    def _headers(self) -> dict[str, str]: ...

    def _transport_error(self, exc: BaseException, *, phase: str) -> str: ...

    def _optional_fields(self, body: dict[str, Any]) -> set[str]: ...


_FINISH = {
    "stop": "stop",
    "length": "length",
    "eos": "stop",
    "tool_calls": "stop",
    "function_call": "stop",
    "content_filter": "stop",
}
MAX_ERROR_BODY = 64 * 1024
REDIRECTS = (301, 302, 303, 307, 308)
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")


def redact_url(url: str) -> str:
    """`url` as it may be shown: the password of a user:password@ (or a lone token@) hidden. Every place
    that shows an endpoint URL goes through here."""
    scheme = _SCHEME.match(url)
    start = scheme.end() if scheme else 0
    # The last "@" anywhere: a password with a raw "/" or "?" must not show either (a path rarely has "@").
    at = url.rfind("@", start)
    if at < 0:
        return url
    user, colon, _ = url[start:at].partition(":")
    return url[:start] + (f"{user}:***" if colon else "***") + url[at:]


def redirect_message(resp: http.client.HTTPResponse, url: str) -> str:
    """A 3xx is not followed (the body would go elsewhere unasked): say so, and where it pointed."""
    location = resp.getheader("Location")
    if not location:
        return f"the server answered {resp.status} {resp.reason} (a redirect) without saying where to"
    where = one_line(redact_url(urljoin(url, location)), 200)
    return f"the server redirected to {where} (not followed: is the endpoint URL right?)"


class Endpoint:
    """Where the server is: scheme, host, port and the API base path (".../v1")."""

    def __init__(self, base_url: str) -> None:
        url = base_url.strip()
        if "://" not in url:
            url = "http://" + url
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise EngineError(f"not an http(s) URL: {redact_url(base_url)!r}")
        self.scheme = parts.scheme
        self.host = parts.hostname
        try:
            self.port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:
            raise EngineError(f"bad port in {redact_url(base_url)!r}") from None
        path = parts.path.rstrip("/")
        # "http://host:8000" means the usual /v1; a path given explicitly is kept as it is.
        self.base_path = path or "/v1"
        self.url = redact_url(f"{self.scheme}://{parts.netloc}{self.base_path}")  # for display only
        # user:password@ in the URL: sent as Basic auth (an API key, when given, wins).
        self.basic_auth: str | None = None
        if parts.username is not None:
            pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()
            self.basic_auth = "Basic " + base64.b64encode(pair).decode("ascii")

    def connection(self, connect_timeout: float) -> http.client.HTTPConnection:
        if self.scheme == "https":
            return http.client.HTTPSConnection(
                self.host, self.port, timeout=connect_timeout, context=ssl.create_default_context()
            )
        return http.client.HTTPConnection(self.host, self.port, timeout=connect_timeout)


class Exchange:
    """One turn's HTTP exchange: POST, then server-sent events read into the outcome and the turn's queue.
    A set `cancel` (or Ctrl-C) shuts the socket down from the consumer's thread, which wakes the reader."""

    def __init__(self, engine: Client, request: GenerationRequest) -> None:
        self.engine = engine
        self.request = request
        self.lock = threading.Lock()
        self.conn: http.client.HTTPConnection | None = None
        self.closed = self.aborted = False
        self.in_reasoning = False  # consumer side: inside a <think> block made of reasoning deltas
        self.done = False
        self.probs: list[Any] | None = [] if request.probs_k else None  # token records, as they come
        self.calls = DeltaAssembler()  # tool_calls deltas, written into the answer once finished

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
            if resp.status in REDIRECTS:
                outcome.error = redirect_message(resp, engine.endpoint.url + "/chat/completions")
                return False
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
        message = server_error_message(resp.read(MAX_ERROR_BODY))
        named = [f for f in self.engine._optional_fields(body) if f in message]
        if resp.status == 400 and named:
            self.engine._rejected.update(named)
            return True
        # A refused response_format: a 400 or 422, or (llama-cpp-python's server) a 500 that names it.
        if "response_format" in body and (resp.status in (400, 422) or "response_format" in message):
            if self.engine.schema_form == "json_schema":  # try the other form once
                self.engine.schema_form = "json_object"
                return True
            outcome.error = f"the server refused the JSON schema (response_format): {message}"
            return False
        outcome.error = f"the server answered {resp.status} {resp.reason}: {message}"
        return False

    def _data(self, value: str, emit: Callable[[Any], None], outcome: Outcome) -> bool:
        """One event's data: a streamed chunk or a whole completion. True when the answer has ended."""
        if value.strip() == "[DONE]":
            self.done = True
            self._emit_calls(emit)
            return True
        try:
            event = parse_event(value)  # the one place server data is checked; nothing reads it before
        except MalformedEvent as exc:
            outcome.error = f"the server sent a malformed event: {exc}"
            return True
        if event.error is not None:
            outcome.error = "the server reported an error: " + event.error
            return True
        if event.usage is not None:
            _usage(event.usage, outcome)
        if event.system_fingerprint is not None:
            outcome.system_fingerprint = self.engine.system_fingerprint = event.system_fingerprint
        for choice in event.choices:
            if self.probs is not None and choice.logprobs:
                self.probs.extend(choice.logprobs)  # before the text: the turn hands both on together
            if choice.reasoning or choice.content:
                emit((choice.reasoning, choice.content))
            for delta in choice.tool_calls:
                self.calls.add(delta.index, delta.name, delta.arguments)
            if choice.finish_reason or event.whole:
                self._emit_calls(emit)
            if choice.finish_reason:
                outcome.finish = _FINISH.get(choice.finish_reason, "stop")
        if event.whole:
            self.done = True
            return True
        return False

    def _emit_calls(self, emit: Callable[[Any], None]) -> None:
        text = self.calls.flush()
        if text:
            emit((None, "\n\n" + text))


def _usage(usage: Usage, outcome: Outcome) -> None:
    """The server's counts, where it sends them (a count that is not one was dropped by the check)."""
    if usage.prompt_tokens is not None:
        outcome.prompt_tokens = usage.prompt_tokens
    if usage.completion_tokens:
        outcome.generated_tokens = usage.completion_tokens
    if usage.cached_tokens is not None:
        outcome.reused_tokens = usage.cached_tokens


def _events(resp: http.client.HTTPResponse) -> Iterator[str]:
    """Server-sent events: `data:` lines joined until a blank line (or the end of the body)."""
    lines: list[str] = []
    while True:
        raw = resp.readline()
        if not raw:
            if any(lines):
                yield "\n".join(lines)
            return
        line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
        if not line:
            if any(lines):  # an event whose data is empty ("data:" alone) carries nothing: skip it
                yield "\n".join(lines)
            lines = []
            continue
        if line.startswith("data:"):
            lines.append(line[5:].removeprefix(" "))
        # "event:", "id:", "retry:" and ":" comments (keep-alives) carry nothing a chat needs
