"""Scoring a given answer (`:score`, a batch prompt's `reference`) against an OpenAI-compatible server.

The server applies the chat template, so the answer goes as the final assistant message, left open
(`continue_final_message`, as vLLM and SGLang take it), and the server is asked for the log-probabilities of
the prompt's own tokens (vLLM's `prompt_logprobs`, with `prompt_token_ids`); one token is generated and
thrown away. A server that sends none (llama.cpp's, OpenAI's) cannot score: one line says so.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable
from typing import Any, Protocol

from qwenchat.engines.api import GenerationRequest, ScoreError
from qwenchat.engines.job import Job, Outcome
from qwenchat.engines.openai.events import clean, server_error_message
from qwenchat.engines.openai.http import MAX_ERROR_BODY, REDIRECTS, Client, redirect_message
from qwenchat.engines.openai.logprobs import BadLogprobs, NoPromptLogprobs, parse_prompt_logprobs
from qwenchat.probs.record import MAX_TOP_K, TokenProb
from qwenchat.tools.calls import api_messages


class Scorer(Client, Protocol):
    """What a score needs of the engine (which imports this module): an exchange's needs, the model's name."""

    model: str | None

    def connect(self) -> list[str]: ...


MAX_BODY = 256 * 1024 * 1024  # a scored prompt's logprobs with their alternatives; more is no answer


def score_body(engine: Scorer, request: GenerationRequest, answer: str) -> dict[str, Any]:
    """The chat-completions request that returns the prompt's logprobs, the answer its tail."""
    messages = [*request.messages, {"role": "assistant", "content": answer}]
    body: dict[str, Any] = {
        "model": engine.model,
        "messages": api_messages(messages),
        "stream": False,
        "max_tokens": 1,
        "temperature": 0.0,
        "add_generation_prompt": False,
        "continue_final_message": True,
        "prompt_logprobs": min(max(request.probs_k, 1), MAX_TOP_K),
        "return_token_ids": True,
    }
    if request.tools:
        body["tools"] = request.tools
    if request.template_kwargs:
        body["chat_template_kwargs"] = dict(request.template_kwargs)
    return body


def score_job(engine: Scorer, request: GenerationRequest, answer: str, out: list[TokenProb]) -> Job:
    """One POST on a thread of its own; `abort` (Ctrl-C) shuts its socket down."""
    if engine.model is None:
        engine.connect()
    payload = json.dumps(score_body(engine, request, answer)).encode("utf-8")
    where = f"{engine.endpoint.host}:{engine.endpoint.port}"
    state: dict[str, Any] = {"sock": None}

    def run(emit: Callable[[Any], None], outcome: Outcome, cancel: threading.Event) -> None:
        phase = "connect"
        conn = engine.endpoint.connection(engine.connect_timeout)
        try:
            conn.connect()
            state["sock"] = conn.sock
            if cancel.is_set():
                return
            conn.sock.settimeout(engine.timeout)
            phase = "request"
            headers = {**engine._headers(), "Content-Type": "application/json"}
            path = engine.endpoint.base_path + "/chat/completions"
            conn.request("POST", path, body=payload, headers=headers)
            resp = conn.getresponse()
            phase = "body"
            if resp.status in REDIRECTS:
                outcome.error = redirect_message(resp, engine.endpoint.url + "/chat/completions")
            elif resp.status >= 400:
                message = server_error_message(resp.read(MAX_ERROR_BODY))
                outcome.error = f"the server answered {resp.status} {resp.reason}: {message}"
            else:
                out.extend(_records(resp.read(MAX_BODY + 1), answer, where))
        except ScoreError as exc:
            outcome.error = str(exc)
        except BaseException as exc:
            if not cancel.is_set():
                outcome.error = engine._transport_error(exc, phase=phase)
        finally:
            conn.close()

    def abort() -> None:
        sock = state["sock"]
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    return Job(run, abort=abort, wait=False)


def _records(raw: bytes, answer: str, where: str) -> list[TokenProb]:
    if len(raw) > MAX_BODY:
        raise ScoreError(f"the server at {where} sent more than {MAX_BODY >> 20} MiB of prompt logprobs")
    try:
        data = json.loads(clean(raw.decode("utf-8", errors="replace")))
    except (ValueError, RecursionError):
        raise ScoreError(f"the server at {where} did not answer with JSON") from None
    try:
        return parse_prompt_logprobs(data, answer)
    except NoPromptLogprobs:
        raise ScoreError(
            f"the server at {where} returns no prompt logprobs, so it cannot score an answer "
            "(vLLM can: prompt_logprobs)"
        ) from None
    except BadLogprobs as exc:
        raise ScoreError(f"the server at {where} sent malformed prompt logprobs: {exc}") from None
