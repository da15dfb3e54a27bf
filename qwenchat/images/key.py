"""The cache key of a prompt with images. The tokens of an image are all the same placeholder id
(`<|image_pad|>`), so two prompts that differ only in their images have equal token ids: a KV cache that
compared ids would keep the first image's keys and values for the second. The key replaces each image's
placeholder tokens by negative numbers made from the image's SHA-256 (and the token's place in the image),
so comparing keys tells images apart, and the same image keeps its cached positions."""

from __future__ import annotations

_SPAN = 1 << 24  # tokens one image may have: far more than any model gives one image


def image_key(sha256: str, index: int) -> int:
    """The key of the `index`-th placeholder token of the image with this hash (hex; an engine may hash more
    than the file into it, e.g. the image's patch grid): negative, never a token id."""
    return -(int(sha256[:15], 16) * _SPAN + index + 1)


def keyed_ids(ids: list[int], pad_id: int, hashes: list[str], counts: list[int]) -> list[int]:
    """`ids` with the placeholder tokens of image i (counts[i] consecutive `pad_id`s, in order) replaced by
    their keys; ValueError when the placeholders do not add up to the images'."""
    out = list(ids)
    it = iter(zip(hashes, counts, strict=True))
    pos = 0
    n = len(out)
    while pos < n:
        if out[pos] != pad_id:
            pos += 1
            continue
        try:
            sha, count = next(it)
        except StopIteration:
            raise ValueError("more image placeholders than images") from None
        if out[pos : pos + count] != [pad_id] * count:
            raise ValueError("an image's placeholders do not match its token count")
        for j in range(count):
            out[pos + j] = image_key(sha, j)
        pos += count
    if next(it, None) is not None:
        raise ValueError("fewer image placeholders than images")
    return out


def model_ids(keyed: list[int], pad_id: int) -> list[int]:
    """The token ids a model sees for a key: each image key back to the placeholder id."""
    return [pad_id if t < 0 else t for t in keyed]


def image_runs(keyed: list[int]) -> list[tuple[int, int]]:
    """(start, end) of each image's keyed tokens, in order (a run starts where a key's index is 0)."""
    runs: list[tuple[int, int]] = []
    for pos, t in enumerate(keyed):
        if t >= 0:
            continue
        if (-t - 1) % _SPAN == 0:
            runs.append((pos, pos + 1))
        elif runs and runs[-1][1] == pos:
            runs[-1] = (runs[-1][0], pos + 1)
    return runs
