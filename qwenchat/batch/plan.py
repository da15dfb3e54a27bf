"""The runs of a batch: every prompt (x every row of variables) x every variant x every seed, each with its
settings checked against the engine before anything runs, and a stable key for resume and diff."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qwenchat.batch.inputs import BatchError, Prompt, fill, filled
from qwenchat.compare.variants import Variant
from qwenchat.engines.api import Engine, SupportsAdapters
from qwenchat.errors import UserError
from qwenchat.settings import SettingsSchema, check_min_max

SPECIAL_KEYS = ("seed", "system", "adapter")
MAX_RUNS = 1_000_000


@dataclass
class Run:
    prompt_index: int
    vars_index: int | None  # 1-based row of --vars, None without
    variant: str  # label: "A", "B", ... ("" without --grid)
    variant_overrides: dict[str, str]  # as typed: what tells the variant apart
    seed: int
    messages: list[dict[str, str]]  # the user/assistant turns, the last one to be answered
    system: str | None
    settings: dict[str, Any] = field(default_factory=dict)  # overrides of the run's settings, checked
    adapter: str | None = None  # a variant's adapter name; "off" for the base model; None: as loaded
    reference: str | None = None  # the prompt's reference answer, placeholders filled (scored per record)

    @property
    def id(self) -> str:
        """Where the run sits in the batch: `p3.v2/B/s1` (prompt 3, variables row 2, variant B, seed 1)."""
        row = f".v{self.vars_index}" if self.vars_index is not None else ""
        variant = f"/{self.variant}" if self.variant else ""
        return f"p{self.prompt_index}{row}{variant}/s{self.seed}"

    @property
    def prompt_hash(self) -> str:
        """What was asked (system prompt and messages): a changed prompt file is not taken as done."""
        data = json.dumps({"system": self.system, "messages": self.messages}, sort_keys=True)
        return hashlib.sha256(data.encode("utf-8", errors="surrogatepass")).hexdigest()[:16]

    @property
    def key(self) -> str:
        return f"{self.id}#{self.prompt_hash}"


def parse_seeds(text: str) -> list[int]:
    """`1,2,3` (or a range `1-5`) into distinct seeds in order."""
    seeds: list[int] = []
    for part in text.split(","):
        part = part.strip()
        lo, dash, hi = part.partition("-")
        try:
            values = range(int(lo), int(hi) + 1) if dash and lo else [int(part)]
        except ValueError:
            raise BatchError(f"--seeds: {part!r} is not a seed (use 1,2,3 or 1-5)") from None
        for s in values:
            if not 0 <= s < 2**32:
                raise BatchError(f"--seeds: {s} is not between 0 and 4294967295")
            if s not in seeds:
                seeds.append(s)
    if not seeds:
        raise BatchError("--seeds: no seeds given")
    return seeds


def _system_value(variant: Variant) -> str | None:
    raw = variant.raw["system"]
    value = variant.overrides["system"]
    text = value if isinstance(value, str) else raw
    if text in ("-", "none", "None"):
        return None
    if text.startswith("@"):
        try:
            return Path(text[1:]).expanduser().read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise BatchError(f"system={text}: cannot read it ({exc.__class__.__name__})") from None
    return text


def check_variants(
    variants: list[Variant], schema: SettingsSchema, engine: Engine, seeds_given: bool
) -> None:
    """Every key of every variant is a setting this engine honours, a seed, a system prompt or an adapter
    it can switch to: refused here with one line, before the model answers anything."""
    for v in variants:
        for key, value in v.overrides.items():
            if key == "seed":
                if seeds_given:
                    raise BatchError("seed is both in --grid and --seeds; give it in one place")
                if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2**32:
                    raise BatchError(f"seed={v.raw[key]}: a seed is an integer in 0..4294967295")
            elif key == "adapter":
                _check_adapter(engine, v.raw[key])
            elif key != "system":
                try:
                    v.overrides[key] = schema.check(key, value)
                except UserError as exc:
                    raise BatchError(f"--grid: {exc}") from None


def _check_adapter(engine: Engine, name: str) -> None:
    names = engine.adapters() if isinstance(engine, SupportsAdapters) else []
    if not names:
        raise BatchError("adapter: this engine cannot switch adapters (needs transformers and --adapter)")
    if name not in ("off", "on") and name not in names:
        have = ", ".join(names) or "none loaded; add --adapter PATH"
        raise BatchError(f"adapter={name}: no such adapter (loaded: {have})")


def plan_runs(
    prompts: list[Prompt],
    var_rows: list[dict[str, str]] | None,
    variants: list[Variant],
    seeds: list[int],
    *,
    default_system: str | None,
    base_settings: dict[str, Any],
    schema: SettingsSchema,
    name: str = "prompts",
) -> list[Run]:
    """Every prompt x variables row x variant x seed, in that order (a prompt's runs are together)."""
    total = len(prompts) * len(var_rows or [None]) * len(variants) * len(seeds)
    if total > MAX_RUNS:
        raise BatchError(f"{total} runs; at most {MAX_RUNS} in one batch")
    systems = {v.label: _system_value(v) for v in variants if "system" in v.overrides}
    runs = []
    for p in prompts:
        try:
            own = {k: schema.check(k, val) for k, val in p.settings.items()}
        except UserError as exc:
            raise BatchError(f"{name} line {p.line}: {exc}") from None
        rows = list(enumerate(var_rows, 1)) if var_rows else [(None, {})]
        for vars_index, row in rows:
            messages, system = filled(p, row)
            if not p.has_system:
                system = default_system
            for v in variants:
                settings = {**own, **{k: x for k, x in v.overrides.items() if k not in SPECIAL_KEYS}}
                try:
                    check_min_max({**base_settings, **settings})
                    schema.check_combination({**base_settings, **settings})
                except UserError as exc:
                    raise BatchError(f"{name} line {p.line}, variant {v.label}: {exc}") from None
                # a grid's seed, else the prompt's own (a case kept with :keep), else the run's seeds
                own_seed = [p.seed] if p.seed is not None else seeds
                for seed in [v.overrides["seed"]] if "seed" in v.overrides else own_seed:
                    runs.append(
                        Run(
                            p.index,
                            vars_index,
                            v.label,
                            dict(v.raw),
                            seed,
                            messages,
                            systems.get(v.label, system),
                            settings,
                            v.raw.get("adapter"),
                            fill(p.reference, {**p.variables, **row}) if p.reference is not None else None,
                        )
                    )
    return runs
