"""Seeded low-resource sampling: source pools -> the train/dev/test examples of one seed.

The rules (JoLA's low-resource setting, made reproducible):

* train: ``train_size`` examples drawn from the source's train pool;
* dev: ``dev_size`` examples drawn from the source's validation pool where it has one, else from
  the rest of the train pool (disjoint from train). When the train pool holds fewer than
  ``train_size + dev_size`` examples it is divided in the same proportion (so both get some);
* test: the whole test pool in source order, or ``test_size`` examples of it chosen with a fixed
  seed (0) so every sampling seed is scored on the same test set.

Each draw sorts the pool by example id and shuffles index lists with ``random.Random(seed)``
(never the global ``random`` state), so a seed selects the same examples on every run, machine
and method. A shuffle is a permutation, so the first ``n`` of it do not depend on any other size:
raising ``dev_size`` never changes the train sample.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass

from jola_ray.data.task import Example, Splits
from jola_ray.errors import DataError

log = logging.getLogger(__name__)

TEST_SUBSAMPLE_SEED = 0
ALL_SPLITS = frozenset(("train", "dev", "test"))


@dataclass(frozen=True)
class Pools:
    """All examples a source offers, per split; ``dev`` is None where it has no validation split."""

    train: list[Example]
    dev: list[Example] | None
    test: list[Example]
    origin: str  # where they came from, for messages ("files under DIR", "hub allenai/ai2_arc")


def _sorted_unique(examples: list[Example], what: str) -> list[Example]:
    ordered = sorted(examples, key=lambda e: e.id)
    for prev, cur in zip(ordered, ordered[1:], strict=False):
        if prev.id == cur.id:
            raise DataError(f"{what}: example id {cur.id!r} occurs more than once")
    return ordered


def _shuffled(examples: list[Example], rng: random.Random) -> list[Example]:
    order = list(range(len(examples)))
    rng.shuffle(order)
    return [examples[i] for i in order]


def check_size(name: str, value: int | None, allow_none: bool = False) -> None:
    """Sizes are positive integers (None only where it means "the whole split")."""
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise DataError(f"{name} must be a positive integer, got {value!r}")


def sample_splits(
    pools: Pools,
    seed: int,
    train_size: int | None,
    dev_size: int | None,
    test_size: int | None,
    need: frozenset[str] = ALL_SPLITS,
) -> Splits:
    """The examples of one seed; None sizes take the whole pool (see the module docstring).

    ``need``: the splits the caller reads. An empty train pool is accepted when ``"train"`` is
    not among them (a folder holding only test.json: train is empty, dev too unless the source
    has a validation split). A split that comes out smaller than asked is logged as a warning
    and listed by ``Splits.short()``.
    """
    for name, value in (
        ("train_size", train_size),
        ("dev_size", dev_size),
        ("test_size", test_size),
    ):
        check_size(name, value, allow_none=True)
    if not pools.train and "train" in need:
        raise DataError(f"{pools.origin}: the train split is empty")
    if not pools.test:
        raise DataError(f"{pools.origin}: the test split is empty")
    rng = random.Random(seed)
    train_pool = _shuffled(_sorted_unique(pools.train, f"{pools.origin}, train"), rng)
    asked = {"train": train_size, "dev": dev_size, "test": test_size}
    if not train_pool:  # a test-only source: train (and dev without a validation split) empty
        asked = {"test": test_size, **({"dev": dev_size} if pools.dev else {})}
        train, dev = [], []
        if pools.dev:
            dev_pool = _shuffled(_sorted_unique(pools.dev, f"{pools.origin}, dev"), rng)
            dev = dev_pool if dev_size is None else dev_pool[:dev_size]
    elif pools.dev is not None:
        if not pools.dev:
            raise DataError(f"{pools.origin}: the validation split is empty")
        n_train = len(train_pool) if train_size is None else min(train_size, len(train_pool))
        train = train_pool[:n_train]
        dev_pool = _shuffled(_sorted_unique(pools.dev, f"{pools.origin}, dev"), rng)
        dev = dev_pool if dev_size is None else dev_pool[:dev_size]
    else:
        n_train, n_dev = _divide(len(train_pool), train_size, dev_size, pools.origin)
        train = train_pool[:n_train]
        dev = train_pool[n_train : n_train + n_dev]
    test = pools.test
    if test_size is not None and test_size < len(test):
        keep = set(random.Random(TEST_SUBSAMPLE_SEED).sample(range(len(test)), test_size))
        test = [e for i, e in enumerate(test) if i in keep]
    splits = Splits(train=list(train), dev=list(dev), test=list(test), asked=asked)
    if splits.short():
        log.warning(
            "%s: fewer examples than asked: %s (the run records the sizes used)",
            pools.origin,
            splits.short_note(),
        )
    return splits


def _divide(available: int, train_size: int | None, dev_size: int | None, origin: str):
    """Train and dev counts out of one pool: as asked, or in proportion when it is too small."""
    if train_size is None and dev_size is None:
        raise DataError(
            f"{origin}: no validation split, so dev is carved from train: give train_size or dev_size"
        )
    if train_size is None:
        train_size = max(available - dev_size, 1)
    if dev_size is None:
        dev_size = max(available - train_size, 1)
    if train_size + dev_size <= available:
        return train_size, dev_size
    if available < 2:
        raise DataError(
            f"{origin}: the train split has {available} example(s), too few for train and dev"
        )
    n_train = round(available * train_size / (train_size + dev_size))
    n_train = min(max(n_train, 1), available - 1)
    return n_train, available - n_train
