"""Synthetic demo tasks: tiny, deterministic, learnable by head edits on a tiny model on a CPU.

The embedded default sweep runs on these (no files, no hub). The char-level tiny tokenizer
spends one token per character and JoLA's template alone is ~130 characters, so demo prompts use
the compact ``DEMO_TEMPLATE`` (same response marker, so extraction is unchanged) around an
instruction of a dozen characters. Labels are single characters (decided at the first generated
token) and exactly balanced, so the majority baseline is 1 / number of labels on the test set.

* ``demo_majority``: ``"Most? bbabbbdb"`` -> ``b``, the letter that fills 6 of the 8 places
  (labels a..d): the easiest, the signal is a quarter of the prompt;
* ``demo_vowel``: ``"Vowel? ebko"`` -> ``y`` if the word starts with a vowel, else ``n``;
* ``demo_parity``: ``"Even? 4817"`` -> ``y`` if the number is even, else ``n``;
* ``demo_last_digit``: ``"Last? 4817"`` -> ``7`` (labels 0..9).

The pools are generated from a fixed per-task seed, independent of the sampling seed: the train
pool has 1,000 examples, the dev pool 200 and the test pool 100; ``load_splits`` then samples
train and dev from them with the sampling seed, as for a real benchmark.
"""

from __future__ import annotations

import random
import string
from collections.abc import Callable

from jola_ray.data.sampling import Pools
from jola_ray.data.task import RESPONSE_MARKER, Example

DEMO_TEMPLATE = "{instruction}\n" + RESPONSE_MARKER + "\n"
POOL_SIZES = {"train": 1000, "dev": 200, "test": 100}
_VOWELS = "aeiou"
_CONSONANTS = "".join(c for c in string.ascii_lowercase if c not in _VOWELS)
_DIGITS = string.digits


def _majority(label: str, rng: random.Random) -> str:
    letters = [label] * 6 + [rng.choice([c for c in "abcd" if c != label]) for _ in range(2)]
    rng.shuffle(letters)
    return "Most? " + "".join(letters)


def _vowel(label: str, rng: random.Random) -> str:
    first = rng.choice(_VOWELS if label == "y" else _CONSONANTS)
    return "Vowel? " + first + "".join(rng.choice(string.ascii_lowercase) for _ in range(3))


def _parity(label: str, rng: random.Random) -> str:
    last = rng.choice("02468" if label == "y" else "13579")
    return "Even? " + "".join(rng.choice(_DIGITS) for _ in range(3)) + last


def _last_digit(label: str, rng: random.Random) -> str:
    return "Last? " + "".join(rng.choice(_DIGITS) for _ in range(3)) + label


# name -> (labels, instruction builder given the gold label)
DEMO_TASKS: dict[str, tuple[tuple[str, ...], Callable[[str, random.Random], str]]] = {
    "demo_majority": (("a", "b", "c", "d"), _majority),
    "demo_vowel": (("y", "n"), _vowel),
    "demo_parity": (("y", "n"), _parity),
    "demo_last_digit": (tuple(_DIGITS), _last_digit),
}


def _generate(name: str, split: str, count: int) -> list[Example]:
    """``count`` examples with labels cycling over the label set (balanced), then shuffled."""
    labels, build = DEMO_TASKS[name]
    rng = random.Random(f"{name}:{split}")  # str seeds hash with sha512: stable everywhere
    gold = [labels[i % len(labels)] for i in range(count)]
    rng.shuffle(gold)
    return [
        Example(
            id=f"{split}-{i:05d}",
            prompt=DEMO_TEMPLATE.format(instruction=build(label, rng)),
            answer=label,
        )
        for i, label in enumerate(gold)
    ]


def demo_pools(name: str) -> Pools:
    """The generated train/dev/test pools of a demo task."""
    return Pools(
        train=_generate(name, "train", POOL_SIZES["train"]),
        dev=_generate(name, "dev", POOL_SIZES["dev"]),
        test=_generate(name, "test", POOL_SIZES["test"]),
        origin=f"demo task {name} (generated)",
    )
