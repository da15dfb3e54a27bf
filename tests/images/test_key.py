"""The cache key of a prompt with images: equal ids, unequal images, unequal keys."""

from __future__ import annotations

import threading

import pytest

from qwenchat.engines.prefix_cache import Plan, PrefixCache, schedule
from qwenchat.images.key import image_runs, keyed_ids, model_ids

PAD = 9
A, B = "a" * 64, "b" * 64


def test_two_images_with_equal_ids_get_unequal_keys():
    ids = [1, 2, PAD, PAD, PAD, 3, 4]
    ka = keyed_ids(ids, PAD, [A], [3])
    kb = keyed_ids(ids, PAD, [B], [3])
    assert ka[:2] == kb[:2] == [1, 2] and ka[5:] == kb[5:] == [3, 4]
    assert ka[2:5] != kb[2:5] and all(t < 0 for t in ka[2:5]) and len(set(ka[2:5])) == 3
    assert keyed_ids(ids, PAD, [A], [3]) == ka  # the same image, the same key
    assert model_ids(ka, PAD) == ids


def test_runs_are_found_even_for_the_same_image_twice():
    ids = [1, PAD, PAD, 2, PAD, PAD, 3]
    keyed = keyed_ids(ids, PAD, [A, A], [2, 2])
    assert image_runs(keyed) == [(1, 3), (4, 6)]


def test_placeholders_that_do_not_add_up_are_an_error():
    with pytest.raises(ValueError):
        keyed_ids([1, PAD, PAD], PAD, [A], [3])
    with pytest.raises(ValueError):
        keyed_ids([1, PAD, PAD], PAD, [A, B], [2, 2])
    with pytest.raises(ValueError):
        keyed_ids([1, PAD], PAD, [], [])


def test_the_kept_cache_stops_at_the_image_that_changed():
    """What the prefix cache keeps for a prompt with another image: only the chunks before it."""
    chunk = 4
    ids = list(range(10, 20)) + [PAD] * 6 + list(range(30, 40))
    first, other = keyed_ids(ids, PAD, [A], [6]), keyed_ids(ids, PAD, [B], [6])
    cache = PrefixCache()
    first_plan = Plan(first, schedule(len(first), [], chunk))
    cache.prefill(first_plan, 0, lambda pos, stop: None, lambda _: None, threading.Event())
    assert cache.keep(first, Plan(other, schedule(len(other), [], chunk))) == 8  # the image starts at 10
    cache = PrefixCache()
    cache.prefill(first_plan, 0, lambda pos, stop: None, lambda _: None, threading.Event())
    longer = first + [1, 2]
    assert cache.keep(first, Plan(longer, schedule(len(longer), [], chunk))) == len(first) // chunk * chunk
