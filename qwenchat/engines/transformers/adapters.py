"""LoRA adapters switched at run time (`:adapter`, `:compare adapter=off,on`), without reloading the model.

The loader wraps the model in a PeftModel with every `--adapter` active at once (peft names "default",
"adapter1", ...). Here they go by the names the banner shows; "on" is that starting state (all of them),
"off" the base model alone (the adapter layers disabled: the very same computation as no adapter at all),
a name one adapter alone. The engine owns the switch, since its kept KV cache must go with the weights.
"""

from __future__ import annotations

from typing import Any

from qwenchat.errors import UserError

OFF, ON = "off", "on"


class AdapterError(UserError):
    """An adapter that cannot be switched to; one line, nothing changed."""


class AdapterSwitch:
    """The adapters of one PeftModel, by display name, and which of them are active."""

    def __init__(self, model: Any, labels: list[str] | None = None) -> None:
        self.model = model
        peft_names = list(getattr(model, "peft_config", {}) or {})
        labels = [label.removesuffix(" (merged)") for label in labels or []]
        if len(labels) != len(peft_names) or len(set(labels)) != len(labels) or {OFF, ON} & set(labels):
            labels = peft_names
        self.by_label = dict(zip(labels, peft_names, strict=True))
        self._all = list(_tuner(model).active_adapters) or peft_names
        self.active: str | None = ON if len(self._all) > 1 else labels[peft_names.index(self._all[0])]

    @classmethod
    def of(cls, model: Any, labels: list[str] | None = None) -> AdapterSwitch | None:
        """The switch of a PeftModel with LoRA-style adapters; None for a plain (or merged) model."""
        if not getattr(model, "peft_config", None) or not hasattr(_tuner(model), "disable_adapter_layers"):
            return None
        return cls(model, labels)

    def names(self) -> list[str]:
        return list(self.by_label)

    def describe(self) -> str:
        """What the banner and `:conf` say: `my-lora`, `off (base model)`, or `on (a + b)`."""
        if self.active is None:
            return "off (base model)"
        if self.active == ON:
            return "on (" + " + ".join(self.names()) + ")"
        return self.active

    def resolve(self, choice: str | None) -> str | None:
        """The canonical name for `choice` (None and "off" are the base model); AdapterError otherwise."""
        if choice is None or choice == OFF:
            return None
        if choice == ON:
            return ON if len(self.by_label) > 1 else self.names()[0]
        if choice not in self.by_label:
            raise AdapterError(f"no adapter {choice!r}; loaded: {', '.join(self.names())} (or off, on)")
        return choice

    def set(self, choice: str | None) -> str | None:
        """Make `choice` active (see resolve); returns the canonical name."""
        name = self.resolve(choice)
        tuner = _tuner(self.model)
        if name is None:
            tuner.disable_adapter_layers()
        else:
            tuner.enable_adapter_layers()
            active = self._all if name == ON else [self.by_label[name]]
            # The tuner's set_adapter takes several names (their deltas add up), PeftModel's only one.
            tuner.set_adapter(active, inference_mode=True)
        self.active = name
        return name


def _tuner(model: Any) -> Any:
    """The LoraModel inside a PeftModel (it holds the layer switches)."""
    return getattr(model, "base_model", model)
