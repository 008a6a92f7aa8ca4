"""Hub converters on fixture rows written in each hub dataset's real schema (no hub access)."""

import copy
import json
import sys
import types
from pathlib import Path

import pytest

from jola_ray.data import build_prompt, get_task
from jola_ray.data.hub import convert_hub_rows, fetch_hub_rows
from jola_ray.errors import DataError

ROWS = json.loads((Path(__file__).parent / "fixtures" / "hub_rows.json").read_text())


def pools(task_name, rows_key=None):
    return convert_hub_rows(get_task(task_name), ROWS[rows_key or task_name], "fixture")


def instruction(example):
    head, _, rest = example.prompt.partition("### Instruction:\n")
    assert rest.endswith("\n\n### Response:\n")
    return rest[: -len("\n\n### Response:\n")]


def test_arc_letters_and_digit_labels_and_split_mapping():
    p = pools("arc_c")
    assert [e.id for e in p.train] == ["Mercury_7175875", "NYSEDREGENTS_2012_8_21"]
    assert instruction(p.train[0]) == (
        "Please choose the correct answer to the question: Which of these is a mammal?\n\n"
        "Answer1: shark Answer2: whale Answer3: trout Answer4: eel\n\n"
        "Answer format: answer1/answer2/answer3/answer4"
    )
    assert p.train[0].answer == "answer2"
    assert p.train[1].answer == "answer3"  # answerKey "3" among labels "1".."3"
    assert instruction(p.train[1]).endswith("Answer format: answer1/answer2/answer3")
    assert p.dev[0].answer == "answer1" and "Answer5: rocks" in instruction(p.dev[0])
    assert p.test[0].answer == "answer2"  # ARC is scored on the hub test split


def test_obqa_uses_question_stem_and_tolerates_spaced_answer_key():
    p = pools("obqa")
    assert instruction(p.dev[0]).startswith(
        "Please choose the correct answer to the question: Frilled sharks"
    )
    assert p.dev[0].answer == "answer1"  # answerKey " A"
    assert p.train[0].answer == "answer4"


def test_boolq_drops_passage_and_scores_validation():
    p = pools("boolq")
    assert instruction(p.train[0]) == (
        "Please answer the following question with true or false, question: "
        "do iran and afghanistan speak the same language\n\nAnswer format: true/false"
    )
    assert [e.answer for e in p.train] == ["true", "false"]
    assert p.dev is None  # no labelled test: validation is the test split, dev comes from train
    assert [e.answer for e in p.test] == ["false"]


def test_piqa_siqa_winogrande_hellaswag():
    piqa = pools("piqa")
    assert instruction(piqa.test[0]).startswith(
        "Please choose the correct solution to the question: How do I ready a guinea pig cage"
    )
    assert "\n\nSolution2: Provide" in instruction(piqa.test[0])
    assert piqa.train[0].answer == "solution2" and piqa.test[0].answer == "solution1"
    siqa = pools("siqa")
    assert instruction(siqa.train[0]).startswith(
        "Please choose the correct answer to the question: Cameron decided to have a barbecue "
        "and gathered her friends together. How would Others feel as a result?\n\nAnswer1: "
    )
    assert siqa.test[0].answer == "answer3"  # label "3\n"
    wino = pools("winogrande")
    assert instruction(wino.test[0]).endswith(
        "\n\nOption1: Sarah Option2: Maria Answer format: option1/option2"
    )
    assert wino.test[0].answer == "option2"
    hella = pools("hellaswag")
    assert instruction(hella.train[0]).startswith(
        "Please choose the correct ending to complete the given sentence: Removing ice from car: "
        "Then, the man writes"
    )
    assert instruction(hella.train[0]).endswith("Answer format: ending1/ending2/ending3/ending4")
    assert hella.train[0].answer == "ending4"


def test_mmlu_pro_filters_category_drops_na_and_carves_a_fixed_test_half():
    p = pools("mmlu_pro_biology", "mmlu_pro")
    everything = {e.id: e for e in p.train + p.test}
    assert set(everything) == {"q000070", "q000071", "q000073"}
    assert len(p.test) == 2 and p.dev is None
    # "N/A" options are dropped and the gold letter follows the remaining options
    assert everything["q000070"].answer == "B"
    assert "D: golgi" in instruction(everything["q000070"])
    assert "N/A" not in instruction(everything["q000070"])
    assert everything["q000071"].answer == "C"
    assert instruction(everything["q000071"]).endswith("Answer format: A/B/C")
    assert instruction(everything["q000073"]).endswith("Answer format: A/B/C/D/E/F/G/H/I/J")
    again = pools("mmlu_pro_biology", "mmlu_pro")
    assert [e.id for e in again.test] == [e.id for e in p.test]
    # the category value has a space; one row is too few to carve train and test from
    with pytest.raises(DataError, match="category 'computer science' has 1 test rows"):
        pools("mmlu_pro_computer_science", "mmlu_pro")


def test_gem_targets_and_references():
    e2e = pools("e2e_nlg")
    assert instruction(e2e.train[0]).startswith(
        "Describe this restaurant in fluent English: name[The Vaults]"
    )
    assert e2e.train[0].answer.startswith("The Vaults pub") and e2e.train[0].aliases == ()
    # test rows: empty target, the references are the gold (answer = first reference)
    assert e2e.test[0].answer == "Alimentum is a kid friendly place in the riverside area."
    assert e2e.test[0].aliases == (
        "Alimentum is a kid friendly place in the riverside area.",
        "Alimentum by the riverside welcomes families.",
    )
    assert e2e.test[0].id == "e2e_nlg-test-0"
    common = pools("common_gen")
    assert common.dev is None  # test references are private: validation is the test split
    assert "field, look, stand" in instruction(common.test[0])
    assert len(common.test[0].aliases) == 2
    web = pools("web_nlg")
    assert (
        "Abilene_Regional_Airport | cityServed | Abilene,_Texas; Abilene,_Texas | country"
        in instruction(web.dev[0])
    )
    xsum = pools("xsum")
    assert instruction(xsum.train[0]).startswith(
        "Summarize this article in one sentence: The full cost"
    )


def test_gem_xsum_edinburgh_schema():
    rows = {"train": [{"id": "1", "document": "Doc.", "summary": "Sum."}],
            "validation": [{"id": "2", "document": "Doc two.", "summary": "Sum two."}],
            "test": [{"id": "3", "document": "Doc three.", "summary": "Sum three."}]}  # fmt: skip
    p = convert_hub_rows(get_task("xsum"), rows, "EdinburghNLP/xsum")
    assert p.test[0].answer == "Sum three." and p.test[0].id == "3"


def test_truthfulqa_hub_folds_are_disjoint_and_cover_all_questions():
    fold0 = pools("truthfulqa_fold0", "truthfulqa")
    fold1 = pools("truthfulqa_fold1", "truthfulqa")
    ids = lambda xs: {e.id for e in xs}  # noqa: E731
    assert ids(fold0.test).isdisjoint(ids(fold1.test))
    assert ids(fold0.test) | ids(fold1.test) == {f"q{i:04d}" for i in range(6)}
    for fold in (fold0, fold1):
        assert ids(fold.test).isdisjoint(ids(fold.train) | ids(fold.dev))
        assert len(fold.train) + len(fold.dev) + len(fold.test) == 6
    example = fold0.test[0]
    n = example.prompt.split("Question number ")[1][0]
    assert example.chosen == f"Best {n}" and example.rejected == f"Wrong {n}"
    assert example.choices == (f"Best {n}.", f"Also right {n}.", f"Wrong {n}.", f"Also wrong {n}.")
    assert example.correct == (0, 1) and example.best == 0


def test_clutrr_keeps_two_hop_rows_and_uses_lofit_prompt():
    p = pools("clutrr")
    assert [e.id for e in p.train] == ["00eabf71"]  # the task_1.3 row is dropped
    assert p.train[0].answer == "daughter-in-law"
    text = instruction(p.train[0])
    assert text.startswith('Read the following story about a family. "Herman asked his son, James,')
    assert text.endswith("how is Rosalee related to Herman? Answer: Rosalee is Herman 's")
    assert "[" not in text


@pytest.mark.parametrize(
    ("task", "split", "mutate", "message"),
    [
        ("arc_c", "train", lambda r: r.pop("answerKey"), "missing field 'answerKey'"),
        ("arc_c", "train", lambda r: r.update(answerKey="F"), "field 'answerKey' is 'F'"),
        ("boolq", "train", lambda r: r.update(answer="yes"), "field 'answer' should be bool"),
        ("piqa", "validation", lambda r: r.update(label=-1), "field 'label' is -1"),
        ("hellaswag", "validation", lambda r: r.update(label=""), "field 'label' is empty"),
        ("winogrande", "validation", lambda r: r.update(sentence=""), "field 'sentence' is empty"),
        ("e2e_nlg", "test", lambda r: r.update(references=[]), "missing field 'target'"),
    ],
)
def test_malformed_rows_name_split_row_and_field(task, split, mutate, message):
    rows = copy.deepcopy(ROWS[task])
    mutate(rows[split][0])
    with pytest.raises(DataError, match=message) as info:
        convert_hub_rows(get_task(task), rows, "fixture")
    assert f"hub fixture split {split}, row 0" in str(info.value)


def test_missing_hub_split_is_named():
    rows = {"train": ROWS["arc_c"]["train"], "test": ROWS["arc_c"]["test"]}
    with pytest.raises(DataError, match="split 'validation' missing"):
        convert_hub_rows(get_task("arc_c"), rows, "fixture")


def test_fetch_failure_gives_a_clear_error(monkeypatch):
    """Every candidate id is tried and named; no traceback-only failure (datasets faked)."""
    tried = []

    def offline(hub_id, config=None, revision=None):
        tried.append((hub_id, config, revision))
        raise ConnectionError(f"Couldn't reach '{hub_id}' on the Hub (OfflineModeIsEnabled)")

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=offline))
    with pytest.raises(DataError, match="could not load task piqa from the hub") as info:
        fetch_hub_rows(get_task("piqa"))
    assert tried == [("baber/piqa", None, None), ("ybisk/piqa", None, "refs/convert/parquet")]
    assert "baber/piqa: ConnectionError" in str(info.value) and "--data-dir" in str(info.value)
    with pytest.raises(DataError, match="no hub dataset"):
        fetch_hub_rows(get_task("mquake"))


def test_fetch_returns_rows_per_split(monkeypatch):
    fake = {"train": ROWS["arc_c"]["train"], "validation": ROWS["arc_c"]["validation"]}
    monkeypatch.setitem(
        sys.modules, "datasets", types.SimpleNamespace(load_dataset=lambda *a, **k: fake)
    )
    rows, source = fetch_hub_rows(get_task("arc_c"))
    assert source == "allenai/ai2_arc" and rows["train"][0]["id"] == "Mercury_7175875"


def test_prompt_is_the_jola_template():
    assert build_prompt("X") == (
        "Below is an instruction that describes a task. Write a response that appropriately "
        "completes the request.\n ### Instruction:\nX\n\n### Response:\n"
    )
