"""Greedy decoding stops a classification row once its label is decided, without changing it."""

import re

import pytest

from jola_ray.data import get_task, load_splits
from jola_ray.data.task import label_alternation
from jola_ray.evaluation.extraction import extract_answer, label_regex
from jola_ray.evaluation.generation import generate_continuations
from jola_ray.evaluation.label_stop import LabelDecided, literal_alternatives
from jola_ray.tiny import build_tiny


def test_only_literal_alternations_qualify():
    assert literal_alternatives("answer1|answer2") == ("answer1", "answer2")
    assert literal_alternatives(label_alternation(("y", "n", "a.b"))) == ("a.b", "y", "n")
    for pattern in (r"\b(A|B)\b", "(A|B)", "[AB]", "A+|B", r"\bA", None, ""):
        assert literal_alternatives(pattern) is None


@pytest.mark.parametrize(
    ("text", "decided"),
    [
        ("a", False),  # could still become "ab", which the alternation tries first
        ("ax", True),
        (" xab", True),
        ("x", False),
        ("a\n", True),  # the line is complete
        ("### Response:\nab", False),  # extraction would read past the marker
    ],
)
def test_a_match_is_decided_once_no_longer_label_can_start_before_it(text, decided):
    stop = LabelDecided(None, 0, re.compile("ab|a"), longest=2)
    assert stop._decided(text) is decided


def test_stopped_rows_give_the_full_decodings_predictions():
    model, tok = build_tiny("demo", seed=3)  # init std 0.5: varied outputs
    task = get_task("demo_majority")  # labels a..d: a random model emits them often
    prompts = [e.prompt for e in load_splits(task, seed=42, dev_size=24).dev]
    regex = label_regex(task)
    full = generate_continuations(model, tok, prompts, batch_size=8, max_new_tokens=10)
    short = generate_continuations(
        model, tok, prompts, batch_size=8, max_new_tokens=10, label_regex=regex
    )
    assert [extract_answer(task, s) for s in short] == [extract_answer(task, f) for f in full]
    assert all(f.startswith(s) for s, f in zip(short, full, strict=True))
    assert sum(len(s) < len(f) for s, f in zip(short, full, strict=True)) >= 3  # it did stop
