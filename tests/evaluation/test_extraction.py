"""Answer extraction: first response line, first label match, exact-match normalisation."""

from jola_ray.data.task import PROMPT_TEMPLATE, Task
from jola_ray.evaluation import extract_answer
from jola_ray.evaluation.extraction import first_response_line, normalize_answer

BOOLQ = Task(
    name="boolq",
    benchmark="commonsense",
    kind="classification",
    metrics=("accuracy",),
    primary_metric="accuracy",
    labels=("true", "false"),
    label_pattern="true|false",
)
ANSWERS = Task(
    name="siqa10",
    benchmark="commonsense",
    kind="classification",
    metrics=("accuracy",),
    primary_metric="accuracy",
    labels=tuple(f"answer{i}" for i in range(1, 11)),
)
GEN = Task(
    name="clutrr",
    benchmark="lofit",
    kind="generation",
    metrics=("exact_match",),
    primary_metric="exact_match",
    max_new_tokens=16,
)


def test_first_line_after_marker_of_full_text():
    full = PROMPT_TEMPLATE.format(instruction="Is the sky green? true/false") + "false\ntrue"
    assert first_response_line(full) == "false"
    assert extract_answer(BOOLQ, full) == "false"


def test_leading_blank_lines_are_skipped_then_first_line_only():
    assert first_response_line("\n\n  the answer is true \nfalse") == "the answer is true"
    assert extract_answer(BOOLQ, "\n\nthe answer is true\nfalse") == "true"


def test_no_label_in_first_line_is_none():
    # "false" only in the second line: the reference reads the first line only.
    assert extract_answer(BOOLQ, "maybe\nfalse") is None
    assert extract_answer(BOOLQ, "") is None


def test_first_match_wins_and_labels_prefer_longest():
    assert extract_answer(BOOLQ, "false, not true") == "false"
    # Without a pattern the labels are alternatives; answer10 must not be read as answer1.
    assert extract_answer(ANSWERS, "answer10 is right") == "answer10"
    assert extract_answer(ANSWERS, "I pick answer3 or answer10") == "answer3"


def test_capture_group_pattern_returns_group():
    mmlu = Task(
        name="mmlu_pro_law",
        benchmark="mmlu_pro",
        kind="classification",
        metrics=("accuracy",),
        primary_metric="accuracy",
        labels=tuple("ABCDEFGHIJ"),
        label_pattern=r"answer is \(?([A-J])\)?",
    )
    assert extract_answer(mmlu, "A: the answer is (C)") == "C"
    assert extract_answer(mmlu, "Answer: C") is None


def test_generation_prediction_is_the_first_line():
    assert extract_answer(GEN, " granddaughter.\nShe is") == "granddaughter."


def test_normalize_answer():
    assert normalize_answer("  Father.  ") == "father"
    assert normalize_answer("U.S.A.!") == "u.s.a"
    assert normalize_answer("New York City") == "new york city"
