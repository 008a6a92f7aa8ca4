"""Demo tasks: the label follows the input by the stated rule; balanced; short; deterministic."""

import re
from collections import Counter

import pytest

from jola_ray.data import get_task, load_splits
from jola_ray.data.demo import demo_pools

RULES = {
    "demo_majority": lambda text: Counter(text).most_common(1)[0][0],
    "demo_vowel": lambda text: "y" if text[0] in "aeiou" else "n",
    "demo_parity": lambda text: "y" if int(text) % 2 == 0 else "n",
    "demo_last_digit": lambda text: text[-1],
}
PROMPT = re.compile(r"^(Most|Vowel|Even|Last)\? (\S+)\n### Response:\n$")


@pytest.mark.parametrize("name", sorted(RULES))
def test_labels_follow_the_rule_and_are_balanced(name):
    task = get_task(name)
    pools = demo_pools(name)
    for split in (pools.train, pools.dev, pools.test):
        for example in split:
            match = PROMPT.match(example.prompt)
            assert match, example.prompt
            assert RULES[name](match.group(2)) == example.answer
            assert len(example.prompt) <= 40  # one token per character on the tiny tokenizer
    counts = Counter(e.answer for e in pools.test)
    assert set(counts) == set(task.labels)
    assert max(counts.values()) - min(counts.values()) <= 1
    assert len(pools.test) == 100


@pytest.mark.parametrize("name", sorted(RULES))
def test_pools_are_deterministic_and_seeds_sample_differently(name):
    assert demo_pools(name) == demo_pools(name)
    first, again = load_splits(get_task(name), seed=1), load_splits(get_task(name), seed=1)
    other = load_splits(get_task(name), seed=2)
    assert first == again
    assert first.sizes() == {"train": 128, "dev": 64, "test": 100}
    assert [e.id for e in first.train] != [e.id for e in other.train]
    assert first.test == other.test


def test_label_extraction_on_generated_text():
    task = get_task("demo_last_digit")
    assert re.search(task.label_pattern, "7xq2").group(0) == "7"
    assert get_task("demo_vowel").max_new_tokens == 4
