"""A remote engine: stream chat completions from any OpenAI-compatible server (vLLM, SGLang, llama.cpp, ...).

Standard library only (http.client), so no extra is needed. The HTTP exchange (openai_http.py) is this
engine's job in the shared turn (turn.py), on a thread of its own per turn; a set `cancel` (or Ctrl-C) shuts
the socket down at once and the turn ends with "interrupted".
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import ssl
import threading
from collections.abc import Iterator
from typing import Any

from qwenchat.engines.api import Chunk, EngineError, GenerationRequest, finish_scoring
from qwenchat.engines.job import Job
from qwenchat.engines.openai.events import clean, one_line, server_error_message
from qwenchat.engines.openai.http import (
    MAX_ERROR_BODY,
    REDIRECTS,
    Endpoint,
    Exchange,
    redirect_message,
)
from qwenchat.engines.openai.images import content_parts
from qwenchat.engines.turn import Turns
from qwenchat.settings import COMMON, SettingsSchema
from qwenchat.tools.calls import api_messages

DEFAULT_TIMEOUT = 120.0  # seconds without a byte from the server before a turn fails
CONNECT_TIMEOUT = 10.0
API_KEY_ENVS = ("QWENCHAT_API_KEY", "OPENAI_API_KEY")
BAD_KEY = "the API key contains characters a header cannot carry"
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


class OpenAIEngine:
    """The REPL's Engine protocol over HTTP. Prompt rendering and token counting stay on the server."""

    # Images go as image_url content parts (images.py); whether the served model reads them is the
    # server's to say (a text model's server answers with an error, shown in one line).
    takes_images = True

    def image_tokens(self, image: Any, settings: dict[str, Any]) -> int | None:
        return None  # the server's processor counts them

    def __init__(
        self,
        base_url: str,
        model: str | None = None,
        api_key: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        connect_timeout: float = CONNECT_TIMEOUT,
    ) -> None:
        self.endpoint = Endpoint(base_url)
        self.system_fingerprint: str | None = None  # the last one the server sent (its backend's setup)
        self.base_url = self.endpoint.url
        self.model = model
        self.api_key = _api_key(api_key)
        self.timeout = timeout
        self.connect_timeout = min(connect_timeout, timeout)
        self.served_models: list[str] | None = None  # filled by connect()
        self._rejected: set[str] = set()  # optional body fields this server refused with a 400
        # How a JSON schema is sent: OpenAI's json_schema, or json_object + schema (llama-cpp-python's
        # server), tried once the first is refused.
        self.schema_form = "json_schema"
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

    def close(self) -> None:
        self._turns.close()  # a turn's thread ends on its own; nothing else is held

    def fingerprint(self) -> dict[str, Any]:
        """What answered: the server, its model and the backend configuration it last named."""
        return {
            "engine": "openai",
            "model": self.model,
            "endpoint": self.base_url,
            "system_fingerprint": self.system_fingerprint,
        }

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
        elif self.endpoint.basic_auth:
            headers["Authorization"] = self.endpoint.basic_auth
        return headers

    def list_models(self) -> list[str]:
        """GET /models: the ids the server serves. EngineError (one line) on any failure."""
        conn = self.endpoint.connection(self.connect_timeout)
        try:
            conn.request("GET", self.endpoint.base_path + "/models", headers=self._headers())
            resp = conn.getresponse()
            body = resp.read(MAX_ERROR_BODY if resp.status >= 400 else None)
        except Exception as exc:
            raise EngineError(self._transport_error(exc, phase="connect")) from None
        finally:
            conn.close()
        if resp.status in REDIRECTS:
            raise EngineError(redirect_message(resp, self.base_url + "/models"))
        if resp.status >= 400:
            raise EngineError(
                f"{self.base_url}/models answered {resp.status} {resp.reason}: {server_error_message(body)}"
            )
        try:
            data = json.loads(body)
            # Kept whole (requests name the model by it); clean() only makes it encodable: the renderer
            # shows control characters visibly.
            return [clean(str(m["id"])) for m in data["data"]]
        except (ValueError, KeyError, TypeError, RecursionError):
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
            return f"TLS error talking to {where}: {one_line(str(exc), 200)}"
        if isinstance(
            exc,
            http.client.RemoteDisconnected
            | ConnectionResetError
            | BrokenPipeError
            | http.client.IncompleteRead,
        ):
            when = "mid-answer" if phase == "body" else "before answering"
            return f"the server at {where} closed the connection {when}"
        if isinstance(exc, ValueError) and "header" in str(exc):
            return f"cannot send the request to {where}: a header value is not valid"  # never the value
        name = type(exc).__name__
        detail = one_line(str(exc), 200)
        return f"{name} talking to {where}: {detail}" if detail else f"{name} talking to {where}"

    def build_body(self, request: GenerationRequest) -> dict[str, Any]:
        """The chat-completions request for this turn; fields the server refused before are left out."""
        s = request.settings
        body: dict[str, Any] = {
            "model": self.model,
            "messages": content_parts(api_messages(request.messages)),
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
        if request.probs_k:  # optional: a server that refuses them gets them dropped and the turn resent
            body["logprobs"] = True
            body["top_logprobs"] = request.probs_k
        if request.tools:
            body["tools"] = request.tools
        if request.template_kwargs:  # enable_thinking, as vLLM, SGLang and llama.cpp's server take it
            body["chat_template_kwargs"] = dict(request.template_kwargs)
        if request.continue_final:
            # vLLM and SGLang continue the last assistant message with these; other servers ignore them.
            body["add_generation_prompt"] = False
            body["continue_final_message"] = True
        for field_name in self._rejected:
            body.pop(field_name, None)
        if request.json_schema is not None:  # never dropped on a 400: the answer would be unconstrained
            schema = request.json_schema
            body["response_format"] = (
                {"type": "json_schema", "json_schema": {"name": "answer", "schema": schema, "strict": True}}
                if self.schema_form == "json_schema"
                else {"type": "json_object", "schema": schema}
            )
        return body

    def _optional_fields(self, body: dict[str, Any]) -> set[str]:
        required = {"model", "messages", "stream", "temperature", "top_p", "max_tokens", "seed", "stop"}
        required.add("response_format")  # refused: one line, never an unconstrained answer
        return set(body) - required

    # -- one turn ----------------------------------------------------------------------------
    def stream(self, request: GenerationRequest, cancel: threading.Event) -> Iterator[Chunk]:
        return self._turns.stream(self._prepare, request, cancel)

    def score(self, request: GenerationRequest, answer: str, cancel: threading.Event) -> list[Any]:
        """`:score`: the answer's tokens from the server's prompt logprobs (score.py); ScoreError when it
        sends none."""
        from qwenchat.engines.openai.score import score_job

        out: list[Any] = []
        finish_scoring(self._turns.stream(lambda r: score_job(self, r, answer, out), request, cancel), cancel)
        return out

    def _prepare(self, request: GenerationRequest) -> Job:
        """This engine's part of a turn: the HTTP exchange on its own thread. The prompt is unknown here,
        so think_open stays None and the renderer guesses from the output."""
        if self.model is None:
            self.connect()  # EngineError: the turn's error chunk
        exchange = Exchange(self, request)
        return Job(
            exchange.run,
            decode=exchange.decode,
            flush=exchange.flush,
            abort=exchange.abort,
            stop_strings=None,  # the server cuts them
            wait=False,  # a reader stuck in connect holds nothing the next turn needs
            probs=exchange.probs,
        )


def _api_key(given: str | None) -> str | None:
    """The key from the flag, else the environment, without surrounding whitespace (a CRLF key file read
    with $(cat ...) ends in CR); EngineError when a header cannot carry it (never showing it)."""
    if given is None:
        given = next((os.environ[k] for k in API_KEY_ENVS if os.environ.get(k, "").strip()), None)
    key = (given or "").strip()
    try:
        raw = key.encode("latin-1")
    except UnicodeEncodeError:
        raise EngineError(BAD_KEY) from None
    if any(b < 0x20 and b != 0x09 or b == 0x7F for b in raw):  # controls other than tab
        raise EngineError(BAD_KEY)
    return key or None
