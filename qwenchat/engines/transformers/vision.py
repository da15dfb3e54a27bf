"""Vision chat models in the transformers engine: Qwen2-VL and Qwen2.5-VL, loaded through AutoImageProcessor
and AutoModelForImageTextToText (models/loader.py tells them from their config). The image processor alone,
not AutoProcessor: the whole processor wants a video processor, which needs torchvision, and the engine
builds the prompt itself (the chat template places the image tokens, as the processor's would).

The turn is the text engine's (engine.py), with three differences:
- The prompt: each message's images go before its text as `{"type": "image"}` parts, and the chat template
  puts one `<|image_pad|>` per image; each is widened to the image's token count (its patch grid, from the
  image processor with the `min_pixels`/`max_pixels` settings).
- The cache key: every image's placeholder tokens are replaced by keys made from its SHA-256
  (qwenchat.images.key), so the kept cache tells two images apart and reuses the same one.
- The prefill: each image is encoded alone (the same pixels give the same features, whatever else the prompt
  holds), its features take the place of its placeholders' embeddings, and the prompt is computed on the
  same chunk schedule as text, with the model's 3-D rotary positions. Ctrl-C stops the vision encoder before
  the next layer of its blocks (bench/vision_cancel.py measures the wait).
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import torch

from qwenchat.engines.api import GenerationRequest
from qwenchat.engines.prefix_cache import Plan
from qwenchat.engines.transformers.engine import TransformersEngine
from qwenchat.images.key import _SPAN, image_runs, keyed_ids, model_ids
from qwenchat.images.load import ImageError, pixels
from qwenchat.images.ref import ImageRef
from qwenchat.images.settings import image_settings, with_image_settings
from qwenchat.settings import SettingsSchema

IMAGE_TOKEN = "<|image_pad|>"
_KEPT_FEATURES = 16  # encoded images kept (by hash and pixel budget)
_KEPT_IMAGES = 64  # images of recent prompts the prefill can find by their keys


class _Cancelled(Exception):
    """Ctrl-C inside the vision encoder (raised before the next layer of its blocks)."""


def chat_messages(messages: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[ImageRef]]:
    """Messages in the processor's chat-template shape (a message's images, then its text, as parts), and
    the images in prompt order."""
    out, images = [], []
    for m in messages:
        refs = m.get("images") or []
        m = {k: v for k, v in m.items() if k != "images"}
        if refs:
            m["content"] = [*({"type": "image"} for _ in refs), {"type": "text", "text": m["content"]}]
            images.extend(refs)
        out.append(m)
    return out, images


class VisionEngine(TransformersEngine):
    """A vision chat model: TransformersEngine plus images (SupportsImages)."""

    takes_images = True

    def __init__(self, model: Any, tokenizer: Any, image_processor: Any, name: str, **kwargs: Any) -> None:
        super().__init__(model, tokenizer, name, **kwargs)
        self.image_processor = image_processor
        self.image_token_id = int(model.config.image_token_id)
        self.merge = int(model.config.vision_config.spatial_merge_size)
        # key base -> (ref, pixel values, grid) of the images of recent prompts
        self._images: OrderedDict[int, tuple[ImageRef, Any, Any]] = OrderedDict()
        self._features: OrderedDict[tuple[str, tuple[int, int]], Any] = OrderedDict()
        self._processed: OrderedDict[tuple[str, int | None, int | None], tuple[Any, Any]] = OrderedDict()
        self._hook_cancel: threading.Event | None = None
        # Ctrl-C inside the vision encoder: checked before each layer of its blocks (attention, MLP and
        # their projections), since one block of a 7B model's encoder takes seconds on a small CPU
        for block in model.model.visual.blocks:
            for layer in block.modules():
                layer.register_forward_pre_hook(self._check_cancel)

    # -- capabilities ------------------------------------------------------------------------
    @property
    def context_window(self) -> int | None:
        # a vision model's config keeps the language model's window in its text config
        return getattr(self.model.config.get_text_config(), "max_position_embeddings", None)

    def settings_schema(self) -> SettingsSchema:
        return with_image_settings(super().settings_schema())

    def image_tokens(self, image: ImageRef, settings: dict[str, Any]) -> int | None:
        _, grid = self._pixels(image, image_settings(settings)[0])
        return int(grid.prod()) // self.merge**2

    # -- the prompt --------------------------------------------------------------------------
    def render_prompt(self, request: GenerationRequest, generation_prompt: bool = True) -> str:
        messages, _ = chat_messages(request.messages)
        return self.tokenizer.apply_chat_template(
            messages,
            chat_template=self.template_choice.source,
            tools=request.tools,
            tokenize=False,
            add_generation_prompt=generation_prompt and not request.continue_final,
            continue_final_message=request.continue_final,
            **request.template_kwargs,
        )

    def _prompt_ids(self, prompt: str, request: GenerationRequest) -> list[int]:
        """The prompt's ids with each image's placeholder widened to its token count, keyed by its hash."""
        _, images = chat_messages(request.messages)
        budget, _ = image_settings(request.settings)
        ids = self._tokenize(prompt)
        if not images:
            return ids
        grids, keys = [], []
        for ref in images:
            pv, grid = self._pixels(ref, budget)
            # the key names the image and its grid: the same image at another pixel budget has other features
            key = hashlib.sha256(f"{ref.sha256}:{tuple(int(x) for x in grid)}".encode()).hexdigest()
            self._images[_key_base(key)] = (ref, pv, grid)  # the prefill finds it by its keys
            self._images.move_to_end(_key_base(key))
            while len(self._images) > _KEPT_IMAGES:
                self._images.popitem(last=False)
            grids.append(grid)
            keys.append(key)
        counts = [int(g.prod()) // self.merge**2 for g in grids]
        wide: list[int] = []
        it = iter(counts)
        for t in ids:
            if t == self.image_token_id:
                wide.extend([t] * next(it, 1))
            else:
                wide.append(t)
        try:
            return keyed_ids(wide, self.image_token_id, keys, counts)
        except ValueError as exc:  # a template that drops or adds placeholders
            raise ImageError(f"the chat template placed the images wrongly: {exc}") from None

    def _model_ids(self, ids: list[int]) -> list[int]:
        return model_ids(ids, self.image_token_id)

    def _generation_config(self, settings: dict[str, Any]) -> Any:
        return super()._generation_config(image_settings(settings)[1])

    def _pixels(self, ref: ImageRef, budget: dict[str, int | None]) -> tuple[Any, Any]:
        """The image processor's patches and grid (t, h, w) for one image, within the pixel budget; kept,
        since every count of the prompt's tokens asks for them."""
        key = (ref.sha256, budget.get("min_pixels"), budget.get("max_pixels"))
        kept = self._processed.get(key)
        if kept is None:
            kept = self._processed[key] = self._process(ref, budget)
            while len(self._processed) > _KEPT_FEATURES:
                self._processed.popitem(last=False)
        return kept

    def _process(self, ref: ImageRef, budget: dict[str, int | None]) -> tuple[Any, Any]:
        kwargs: dict[str, Any] = {}
        size = dict(getattr(self.image_processor, "size", None) or {})
        if budget.get("min_pixels"):
            size["shortest_edge"] = budget["min_pixels"]
        if budget.get("max_pixels"):
            size["longest_edge"] = budget["max_pixels"]
        if size:
            kwargs["size"] = size
        out = self.image_processor(images=[pixels(ref)], return_tensors="pt", **kwargs)
        return out["pixel_values"], out["image_grid_thw"][0]

    # -- the prefill -------------------------------------------------------------------------
    def _check_cancel(self, module: Any, args: Any) -> None:
        cancel = self._hook_cancel
        if cancel is not None and cancel.is_set():
            raise _Cancelled

    def _image_features(self, ref: ImageRef, pv: Any, grid: Any, cancel: threading.Event) -> Any:
        """One image's features (tokens x hidden), encoded alone and kept by hash and grid."""
        key = (ref.sha256, tuple(int(x) for x in grid[1:]))
        kept = self._features.get(key)
        if kept is not None:
            self._features.move_to_end(key)
            return kept
        self._hook_cancel = cancel
        try:
            out = self.model.model.get_image_features(pv.to(self.device), grid[None].to(self.device))
        finally:
            self._hook_cancel = None
        pooled = out.pooler_output  # one tensor per image (here: one image)
        feats = torch.cat(list(pooled), dim=0) if isinstance(pooled, (list, tuple)) else pooled
        self._features[key] = feats
        while len(self._features) > _KEPT_FEATURES:
            self._features.popitem(last=False)
        return feats

    def _prefill(self, plan: Plan, start: int, emit: Callable[[Any], None], cancel: threading.Event) -> bool:
        ids = plan.ids
        runs = image_runs(ids)
        if not runs:
            self.model.model.rope_deltas = None
            return super()._prefill(plan, start, emit, cancel)
        real = torch.tensor([self._model_ids(ids)], dtype=torch.long, device=self.device)
        refs = [self._images[_run_base(ids[s])] for s, _ in runs]
        embeds = self.model.get_input_embeddings()(real)
        end = plan.end
        try:
            for (s, e), (ref, pv, grid) in zip(runs, refs, strict=True):
                if e > start and s < end:  # only images in the part still to compute are encoded
                    feats = self._image_features(ref, pv, grid, cancel)
                    embeds[0, s:e] = feats[: e - s].to(embeds.dtype)
        except _Cancelled:
            return False
        types = torch.tensor([[1 if t < 0 else 0 for t in ids]], dtype=torch.int, device=self.device)
        grids = torch.stack([g for _, _, g in refs]).to(self.device)
        positions, deltas = self.model.model.get_rope_index(
            real, mm_token_type_ids=types, image_grid_thw=grids
        )
        self.model.model.rope_deltas = deltas  # generate's decode steps place their tokens after the images

        def compute(pos: int, stop: int) -> None:
            self.model(
                inputs_embeds=embeds[:, pos:stop],
                position_ids=positions[:, :, pos:stop],
                past_key_values=self._cache,
                use_cache=True,
                cache_position=torch.arange(pos, stop, device=self.device),
                logits_to_keep=1,
            )
            self._cached_ids = ids[:stop]

        return self._prefix.prefill(plan, start, compute, emit, cancel)

    def warm(self, requests: list[GenerationRequest]) -> bool:
        """No warm-up while typing when the conversation has images (the stand-in prompts would need them
        encoded); text-only conversations warm as in the text engine."""
        if any(m.get("images") for r in requests for m in r.messages):
            return False
        return super().warm(requests)


def _key_base(sha256: str) -> int:
    return int(sha256[:15], 16)


def _run_base(key: int) -> int:
    return (-key - 1) // _SPAN
