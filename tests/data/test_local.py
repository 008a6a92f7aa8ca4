"""Local file loaders: project fixtures, malformed files, and the real files in ../shared/data."""

import json
import os
import re
from pathlib import Path

import pytest

from jola_ray.data import get_task, load_pools, load_splits, register_custom_task, unregister_task
from jola_ray.errors import DataError

FIXTURES = Path(__file__).parent / "fixtures"


def _shared_data() -> Path | None:
    env = os.environ.get("JOLA_RAY_SHARED_DATA")
    candidate = Path(env) if env else Path(__file__).resolve().parents[2].parent / "shared" / "data"
    return candidate if candidate.is_dir() else None


SHARED = _shared_data()
needs_shared = pytest.mark.skipif(SHARED is None, reason="../shared/data not present")


def test_llm_adapters_json_list_from_a_root_or_the_task_folder():
    for data_dir in (FIXTURES, FIXTURES / "commonsense", FIXTURES / "commonsense" / "boolq"):
        pools = load_pools(get_task("boolq"), data_dir)
        assert len(pools.train) == 6 and len(pools.test) == 3 and pools.dev is None
    first = pools.test[0]
    assert first.id == "test-000001" and first.answer == "true"
    assert first.prompt.endswith(
        "question: is water wet\n\nAnswer format: true/false\n\n### Response:\n"
    )


def test_jsonl_instruction_files_with_valid_split(tmp_path):
    folder = tmp_path / "xsum"
    folder.mkdir()
    for split, n in (("train", 3), ("valid", 2), ("test", 2)):
        rows = [{"instruction": f"Summarize {split} {i}", "answer": f"S {i}."} for i in range(n)]
        if split == "test":
            rows[0]["references"] = ["R one.", "R two."]
        (folder / f"{split}.json").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    pools = load_pools(get_task("xsum"), tmp_path)
    assert (len(pools.train), len(pools.dev), len(pools.test)) == (3, 2, 2)
    assert pools.test[0].aliases == ("S 0.", "R one.", "R two.")


def _write_boolq(tmp_path, rows, name="train.json"):
    folder = tmp_path / "boolq"
    folder.mkdir(exist_ok=True)
    good = json.loads((FIXTURES / "commonsense" / "boolq" / "test.json").read_text())
    (folder / "test.json").write_text(json.dumps(good))
    (folder / name).write_text(json.dumps(rows))
    return folder


@pytest.mark.parametrize(
    ("row", "message"),
    [
        (
            {"instruction": "Q?", "answer": "maybe"},
            "field 'answer' is 'maybe', not one of the labels true/false",
        ),
        ({"instruction": "Q?", "answer": " "}, "field 'answer' is empty"),
        ({"answer": "true"}, "missing field 'instruction'"),
        ({"instruction": "Q?", "answer": 1}, "field 'answer' should be str"),
    ],
)
def test_malformed_rows_name_file_row_and_field(tmp_path, row, message):
    good = {"instruction": "Q?", "answer": "true"}
    folder = _write_boolq(tmp_path, [good, row])
    with pytest.raises(DataError, match=message) as info:
        load_pools(get_task("boolq"), tmp_path)
    assert f"{folder / 'train.json'}: row 2" in str(info.value)


def test_invalid_json_and_missing_files_are_named(tmp_path):
    folder = _write_boolq(tmp_path, [])
    (folder / "train.json").write_text('[{"instruction": "Q?", ')
    with pytest.raises(DataError, match="train.json: not valid JSON"):
        load_pools(get_task("boolq"), tmp_path)
    (folder / "train.json").unlink()
    with pytest.raises(DataError, match="missing train.json"):
        load_pools(get_task("boolq"), tmp_path)
    with pytest.raises(DataError, match="expected train.json and test.json") as info:
        load_pools(get_task("arc_c"), tmp_path)
    assert str(tmp_path / "ARC-Challenge") in str(info.value)
    with pytest.raises(DataError, match="does not exist"):
        load_pools(get_task("arc_c"), tmp_path / "nope")


def test_custom_split_files_and_single_file():
    split_files = load_pools(get_task("custom"), FIXTURES / "custom" / "split_files")
    assert (len(split_files.train), len(split_files.dev), len(split_files.test)) == (40, 10, 5)
    assert split_files.train[3].answer == "no" and "Is 3 even?" in split_files.train[3].prompt
    single = load_pools(get_task("custom"), FIXTURES / "custom" / "one_file.jsonl")
    assert [e.id for e in single.train] == [f"ex{i}" for i in range(6)]
    assert [e.id for e in single.dev] == ["ex50"]  # split "validation" counts as dev
    assert [e.id for e in single.test] == ["ex60", "ex61"]


def test_custom_errors(tmp_path):
    bad = tmp_path / "data.jsonl"
    bad.write_text('{"instruction": "a", "answer": "b", "split": "train"}\n'
                   '{"instruction": "a", "answer": "b", "split": "holdout"}\n')  # fmt: skip
    with pytest.raises(DataError, match=r"data.jsonl: row 2: field 'split' is 'holdout'"):
        load_pools(get_task("custom"), tmp_path)
    bad.write_text('{"instruction": "a", "answer": "b", "split": "train"}\n')
    with pytest.raises(DataError, match="no row has split 'test'"):
        load_pools(get_task("custom"), bad)
    with pytest.raises(DataError, match="needs its files"):
        load_pools(get_task("custom"))


def test_registered_custom_task_checks_its_labels(tmp_path):
    (tmp_path / "data.jsonl").write_text(
        '{"instruction": "a", "answer": "yes", "split": "train"}\n'
        '{"instruction": "b", "answer": "perhaps", "split": "test"}\n'
    )
    task = register_custom_task("yesno_custom", tmp_path / "data.jsonl", labels=("yes", "no"))
    try:
        with pytest.raises(DataError, match="row 2: field 'answer' is 'perhaps'"):
            load_splits(task)
    finally:
        unregister_task("yesno_custom")


def test_lofit_fixtures():
    tq = load_pools(get_task("truthfulqa_fold0"), FIXTURES)
    assert (len(tq.train), len(tq.dev), len(tq.test)) == (2, 1, 2)
    pigs = tq.train[0]
    assert pigs.prompt.endswith("### Instruction:\nQ: Can pigs fly? A:\n\n### Response:\n")
    assert (pigs.chosen, pigs.rejected) == ("No, pigs cannot fly", "Yes, pigs can fly")
    assert pigs.choices == (
        "No, pigs cannot fly.", "No, pigs cannot fly on their own.",
        "Yes, pigs can fly.", "Pigs fly at night.",
    )  # fmt: skip
    assert pigs.correct == (0, 1) and pigs.best == 0
    knuckles = tq.train[1]
    assert knuckles.choices[knuckles.best].startswith("Nothing in particular")
    fold1 = load_pools(get_task("truthfulqa_fold1"), FIXTURES / "lofit")
    assert fold1.test[0].answer == "No, vaccines do not cause autism"
    clutrr = load_pools(get_task("clutrr"), FIXTURES)
    assert [e.answer for e in clutrr.train] == ["daughter-in-law", "father"]
    assert "how is Herman related to James? Answer: Herman is James 's" in clutrr.train[1].prompt
    mquake = load_pools(get_task("mquake"), FIXTURES / "lofit" / "mquake")
    first = mquake.train[0]
    assert first.id == "case-00139" and first.answer == "Sweden"
    assert first.aliases == ("SE", "Kingdom of Sweden")
    assert first.prompt.endswith(
        "Q: Imagine that John Krasinski is a citizen of Sweden. Which country is the spouse of "
        "Emily Blunt a citizen of? A:\n\n### Response:\n"
    )


def test_lofit_missing_file_names_what_is_expected(tmp_path):
    folder = tmp_path / "mquake"
    folder.mkdir()
    (folder / "test.jsonl").write_text((FIXTURES / "lofit/mquake/test.jsonl").read_text())
    with pytest.raises(DataError, match="missing train.jsonl"):
        load_pools(get_task("mquake"), tmp_path)
    with pytest.raises(DataError, match="fold_0_"):
        load_pools(get_task("truthfulqa"), tmp_path)


@needs_shared
def test_real_commonsense_files():
    arc = load_splits(get_task("arc_c"), data_dir=SHARED)
    assert arc.sizes() == {"train": 200, "dev": 200, "test": 1172}
    assert {e.id for e in arc.train}.isdisjoint({e.id for e in arc.dev})
    pools = load_pools(get_task("arc_c"), SHARED)
    assert len(pools.train) == 1119
    assert {e.answer for e in pools.test} <= set(get_task("arc_c").labels)
    boolq = load_pools(get_task("boolq"), SHARED / "commonsense" / "boolq")
    assert (len(boolq.train), len(boolq.test)) == (9427, 3270)


@needs_shared
def test_real_lofit_files():
    fold0 = load_splits(get_task("truthfulqa_fold0"), data_dir=SHARED)
    fold1 = load_splits(get_task("truthfulqa_fold1"), data_dir=SHARED)
    assert fold0.sizes() == {"train": 326, "dev": 82, "test": 409}
    assert fold1.sizes() == {"train": 327, "dev": 82, "test": 408}
    questions = lambda xs: {e.prompt for e in xs}  # noqa: E731
    assert questions(fold0.test).isdisjoint(questions(fold1.test))
    assert len(questions(fold0.test) | questions(fold1.test)) == 817
    for example in fold0.test:
        assert example.best in example.correct and len(example.choices) > len(example.correct)
    clutrr = load_splits(get_task("clutrr"), data_dir=SHARED)
    assert clutrr.sizes() == {"train": 300, "dev": 450, "test": 450}
    mquake = load_splits(get_task("mquake"), data_dir=SHARED)
    assert mquake.sizes() == {"train": 134, "dev": 95, "test": 864}


@needs_shared
def test_hub_converters_rebuild_the_real_llm_adapters_strings():
    """Rows rebuilt from the real files' parts through the hub converters give the same text."""
    from jola_ray.data import formats

    arc = json.loads((SHARED / "commonsense" / "ARC-Challenge" / "test.json").read_text())
    for item in arc[:200]:
        head, options, _ = item["instruction"].split("\n\n")
        question = head.removeprefix("Please choose the correct answer to the question: ")
        texts = re.split(r" ?Answer\d: ", options)[1:]
        labels = [chr(65 + i) for i in range(len(texts))]
        gold = labels[int(item["answer"].removeprefix("answer")) - 1]
        row = {"question": question, "choices": {"text": texts, "label": labels}, "answerKey": gold}
        assert formats.arc_like(row, "real") == (item["instruction"], item["answer"])
    boolq = json.loads((SHARED / "commonsense" / "boolq" / "test.json").read_text())
    for item in boolq[:200]:
        question = item["instruction"].split("question: ", 1)[1].split("\n\n")[0]
        row = {"question": question, "answer": item["answer"] == "true", "passage": "p"}
        assert formats.boolq(row, "real") == (item["instruction"], item["answer"])


@needs_shared
def test_real_arc_rows_carry_their_own_options():
    """ARC-Challenge test: 1,165 four-option, 4 three-option and 3 five-option questions."""
    pools = load_pools(get_task("arc_c"), SHARED)
    counts = {}
    for example in pools.test:
        n = len(example.options) if example.options is not None else 5
        counts[n] = counts.get(n, 0) + 1
        assert example.answer in (example.options or get_task("arc_c").labels)
    assert counts == {4: 1165, 3: 4, 5: 3}
