"""The task registry: names, metrics, label sets, extraction patterns, unknown names."""

import re

import pytest

from jola_ray.data import get_task, list_tasks, register_custom_task, unregister_task
from jola_ray.errors import DataError, JolaRayError, UnknownTaskError

COMMONSENSE = ["arc_c", "arc_e", "boolq", "hellaswag", "obqa", "piqa", "siqa", "winogrande"]
DOMAINS = ["biology", "business", "chemistry", "computer_science", "economics", "engineering",
           "health", "history", "law", "math", "other", "philosophy", "physics", "psychology"]  # fmt: skip
GEM = ["common_gen", "e2e_nlg", "web_nlg", "xsum"]
LOFIT = ["truthfulqa_fold0", "truthfulqa_fold1", "clutrr", "mquake"]


def test_every_paper_task_is_registered_once():
    names = [t.name for t in list_tasks()]
    assert len(names) == len(set(names))
    expected = COMMONSENSE + [f"mmlu_pro_{d}" for d in DOMAINS] + GEM + LOFIT
    assert [n for n in names if n in expected] == expected
    assert len(expected) == 30  # 26 JoLA tasks + TruthfulQA (2 folds), CLUTRR, MQuAKE
    assert {n for n in names if n.startswith("demo_")} == {
        "demo_majority",
        "demo_vowel",
        "demo_parity",
        "demo_last_digit",
    }


@pytest.mark.parametrize("name", COMMONSENSE + ["mmlu_pro_law", "demo_vowel", "demo_last_digit"])
def test_classification_tasks_extract_each_label_as_itself(name):
    task = get_task(name)
    assert task.kind == "classification" and task.metrics == ("accuracy",)
    assert task.primary_metric == "accuracy" and task.training == "sft"
    for label in task.labels:
        # the evaluator takes the first match in the first response line
        assert re.search(task.label_pattern, f"{label} because").group(0) == label


def test_reference_vocabularies():
    assert get_task("boolq").labels == ("true", "false")
    assert get_task("arc_c").labels == tuple(f"answer{i}" for i in range(1, 6))
    assert get_task("obqa").labels == ("answer1", "answer2", "answer3", "answer4")
    assert get_task("siqa").labels == ("answer1", "answer2", "answer3")
    assert get_task("hellaswag").labels == ("ending1", "ending2", "ending3", "ending4")
    assert get_task("piqa").labels == ("solution1", "solution2")
    assert get_task("winogrande").labels == ("option1", "option2")
    assert get_task("mmlu_pro_math").labels == tuple("ABCDEFGHIJ")
    # JoLA's MMLU-Pro extraction: first capital A-J anywhere (fragile, but the reference)
    assert re.search(get_task("mmlu_pro_math").label_pattern, "Answer: C").group(0) == "A"
    assert get_task("mmlu_pro_computer_science").extra["category"] == "computer science"


def test_generation_and_lofit_tasks():
    for name in GEM:
        task = get_task(name)
        assert task.kind == "generation" and task.labels is None
        assert task.primary_metric == "bleu" and "rougeL" in task.metrics
        assert task.max_new_tokens == 64
    for name in ("truthfulqa_fold0", "truthfulqa_fold1"):
        task = get_task(name)
        assert task.training == "dpo" and task.kind == "multiple_choice"
        assert task.metrics == ("mc1", "mc2") and task.primary_metric == "mc1"
    assert get_task("truthfulqa_fold1").extra["fold"] == 1
    for name in ("clutrr", "mquake"):
        assert get_task(name).metrics == ("exact_match",)
    assert get_task("boolq").max_new_tokens == 16


def test_aliases_resolve_to_canonical_tasks():
    assert get_task("truthfulqa").name == "truthfulqa_fold0"
    assert get_task("e2e").name == "e2e_nlg"


def test_unknown_task_lists_close_matches():
    with pytest.raises(UnknownTaskError) as info:
        get_task("boolqq")
    message = str(info.value)
    assert "Did you mean: boolq" in message and "arc_c" in message
    assert isinstance(info.value, JolaRayError) and info.value.exit_code == 2
    with pytest.raises(UnknownTaskError, match="mmlu_pro_biology"):
        get_task("mmlu_pro_biolgy")


def test_register_custom_task(tmp_path):
    (tmp_path / "data.jsonl").write_text("")
    task = register_custom_task("my_yesno", tmp_path, labels=["yes", "no"])
    try:
        assert get_task("my_yesno") is task
        assert task.kind == "classification" and task.primary_metric == "accuracy"
        assert re.search(task.label_pattern, "no way").group(0) == "no"
        assert "my_yesno" in [t.name for t in list_tasks()]
    finally:
        unregister_task("my_yesno")
    with pytest.raises(UnknownTaskError):
        get_task("my_yesno")
    with pytest.raises(DataError, match="built-in"):
        register_custom_task("boolq", tmp_path)
    with pytest.raises(DataError, match="does not exist"):
        register_custom_task("other", tmp_path / "missing")
    gen = register_custom_task("my_gen", tmp_path, metric="rougeL")
    try:
        assert gen.kind == "generation" and gen.metrics == ("rougeL",) and gen.labels is None
    finally:
        unregister_task("my_gen")
