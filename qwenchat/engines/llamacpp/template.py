"""A GGUF's own chat template (Jinja, from its metadata), rendered as transformers renders one."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from qwenchat.engines.api import EngineError


class ChatTemplate:
    """A GGUF's Jinja chat template, rendered the way transformers renders it (sandboxed)."""

    def __init__(self, source: str, bos_token: str, eos_token: str) -> None:
        import jinja2
        import jinja2.ext
        from jinja2.sandbox import ImmutableSandboxedEnvironment

        def raise_exception(message: str) -> None:
            raise jinja2.exceptions.TemplateError(message)

        def tojson(
            x: Any,
            ensure_ascii: bool = False,
            indent: int | None = None,
            separators: Any = None,
            sort_keys: bool = False,
        ) -> str:
            return json.dumps(
                x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys
            )

        env = ImmutableSandboxedEnvironment(
            trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols]
        )
        env.filters["tojson"] = tojson
        env.globals["raise_exception"] = raise_exception
        env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
        self.template = env.from_string(source)
        self.bos_token = bos_token
        self.eos_token = eos_token

    def render(
        self,
        messages: list[dict[str, Any]],
        continue_final: bool = False,
        tools: list[dict[str, Any]] | None = None,
        generation_prompt: bool = True,
        **kwargs: Any,
    ) -> str:
        text = self.template.render(
            messages=messages,
            tools=tools,
            add_generation_prompt=generation_prompt and not continue_final,
            bos_token=self.bos_token,
            eos_token=self.eos_token,
            **kwargs,
        )
        if continue_final:
            # As transformers' continue_final_message: cut what the template put after the final message.
            final = messages[-1].get("content") or ""
            if final.strip():
                try:
                    at = text.rindex(final.strip())
                except ValueError:
                    raise EngineError(
                        "the chat template did not keep the final message; cannot continue it"
                    ) from None
                end = (
                    at + len(final.lstrip())
                    if text[at : at + len(final.lstrip())] == final.lstrip()
                    else at + len(final.strip())
                )
                text = text[:end]
        return text
