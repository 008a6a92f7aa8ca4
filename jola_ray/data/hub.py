"""Hugging Face hub sources: fetch rows (``datasets.load_dataset``) and convert them (pure).

``fetch_hub_rows`` is the only code that touches the network; ``convert_hub_rows`` turns the
rows of each hub split (plain dicts, in the dataset's real schema) into the task's pools and is
what the tests exercise. Split mapping follows the evaluation the papers use (datasets.md):
commonsense tasks without a labelled test split are scored on the hub validation split (their
dev then comes from train); CommonGen's test references are private, so it is scored on
validation too.

Tasks without a train split get a fixed, seed-independent carve:

* MMLU-Pro (a category of the ``test`` split): rows sorted by ``question_id``, shuffled with a
  fixed seed; the first half is the test split, the second half the train pool (dev carved from
  it). JoLA's own carving is not public.
* TruthfulQA (817 questions of ``generation``/``validation``): sorted by question, shuffled with
  a fixed seed; fold 0 tests on the first 409, fold 1 on the other 408; of each fold's other
  questions the first 82 are dev, the rest train. This mirrors the sizes of ITI's folds, not its
  exact membership: give LoFiT's CSV files with ``data_dir`` for the exact split.
"""

from __future__ import annotations

import random
from collections.abc import Mapping

from jola_ray.data import formats
from jola_ray.data.sampling import Pools
from jola_ray.data.task import Example, Task, build_prompt
from jola_ray.errors import DataError

CARVE_SEED = "jola-ray-carve"
TRUTHFULQA_DEV = 82


def fetch_hub_rows(task: Task) -> tuple[dict[str, list[dict]], str]:
    """The rows of every split of the task's hub dataset, trying each candidate id in turn."""
    candidates = task.extra.get("hub", ())
    if not candidates:
        raise DataError(
            f"task {task.name} has no hub dataset; give its local files with --data-dir "
            "(see docs/data.md for the layout)"
        )
    failures = []
    for hub_id, config, revision in candidates:
        try:
            import datasets

            loaded = datasets.load_dataset(hub_id, config, revision=revision)
        except Exception as err:  # any hub/network/script failure: try the next candidate
            where = (
                hub_id + (f" ({config})" if config else "") + (f" @ {revision}" if revision else "")
            )
            failures.append(
                f"{where}: {type(err).__name__}: {str(err).splitlines()[0][:160] if str(err) else ''}"
            )
            continue
        return {split: [dict(row) for row in loaded[split]] for split in loaded}, hub_id
    raise DataError(
        f"could not load task {task.name} from the hub (offline? HF_HUB_OFFLINE is "
        f"{'set' if _offline() else 'not set'}); tried:\n  "
        + "\n  ".join(failures)
        + "\nGive local files with --data-dir instead (see docs/data.md)."
    )


def _offline() -> bool:
    import os

    return os.environ.get("HF_HUB_OFFLINE", "0") not in ("", "0", "false", "False")


def _split(rows: Mapping[str, list], split: str, source: str) -> list[dict]:
    if split not in rows:
        raise DataError(f"hub {source}: split {split!r} missing (has: {', '.join(rows) or 'none'})")
    return rows[split]


def _where(source: str, split: str, index: int) -> str:
    return f"hub {source} split {split}, row {index}"


def convert_hub_rows(task: Task, rows: Mapping[str, list[dict]], source: str) -> Pools:
    """The task's pools from the rows of each hub split (keys: hub split names)."""
    loader = task.extra["loader"]
    if loader in ("commonsense", "gem"):
        train_split, dev_split, test_split = task.extra["hub_splits"]
        pools = [
            _convert_split(task, _split(rows, split, source), split, source) if split else None
            for split in (train_split, dev_split, test_split)
        ]
        return Pools(train=pools[0], dev=pools[1], test=pools[2], origin=f"hub {source}")
    if loader == "mmlu_pro":
        return _mmlu_pro(task, _split(rows, "test", source), source)
    if loader == "truthfulqa":
        return _truthfulqa(task, _split(rows, "validation", source), source)
    if loader == "clutrr":
        converted = {}
        for split in ("train", "validation", "test"):
            kept = [
                _clutrr_example(row, _where(source, split, i), split, i)
                for i, row in enumerate(_split(rows, split, source))
                if row.get("task_name") == "task_1.2"
            ]
            converted[split] = kept
        return Pools(
            converted["train"], converted["validation"], converted["test"], f"hub {source}"
        )
    raise DataError(f"task {task.name} has no hub converter")


def _convert_split(task: Task, rows: list[dict], split: str, source: str) -> list[Example]:
    examples = []
    for i, row in enumerate(rows):
        where = _where(source, split, i)
        example_id = str(row.get("id") or row.get("gem_id") or f"{split}-{i:06d}")
        if task.extra["loader"] == "gem":
            instruction, answer, refs = formats.gem(task.name, row, where)
            aliases = refs if split != "train" else ()
        else:
            instruction, answer = formats.COMMONSENSE_CONVERTERS[task.name](row, where)
            formats.check_label(answer, task.labels, where)
            aliases = ()
        options = formats.listed_options(instruction, task.labels, answer, where)
        examples.append(
            Example(
                id=example_id,
                prompt=build_prompt(instruction),
                answer=answer,
                aliases=aliases,
                options=options,
            )
        )
    return examples


def _mmlu_pro(task: Task, rows: list[dict], source: str) -> Pools:
    category = task.extra["category"]
    examples = []
    for i, row in enumerate(rows):
        if row.get("category") != category:
            continue
        where = _where(source, "test", i)
        qid = formats.require(row, "question_id", where, int)
        instruction, answer = formats.mmlu_pro(row, where)
        options = formats.listed_options(instruction, task.labels, answer, where)
        examples.append(
            Example(
                id=f"q{qid:06d}", prompt=build_prompt(instruction), answer=answer, options=options
            )
        )
    if len(examples) < 2:
        raise DataError(
            f"hub {source}: category {category!r} has {len(examples)} test rows, need 2+"
        )
    examples.sort(key=lambda e: e.id)
    order = list(range(len(examples)))
    random.Random(CARVE_SEED).shuffle(order)
    half = (len(examples) + 1) // 2
    test_ids = set(order[:half])
    test = [e for i, e in enumerate(examples) if i in test_ids]
    pool = [e for i, e in enumerate(examples) if i not in test_ids]
    return Pools(train=pool, dev=None, test=test, origin=f"hub {source} ({category})")


def _truthfulqa(task: Task, rows: list[dict], source: str) -> Pools:
    items = []
    for i, row in enumerate(rows):
        where = _where(source, "validation", i)
        question = formats.require(row, "question", where)
        best = formats.require(row, "best_answer", where)
        correct = formats.require(row, "correct_answers", where, (list, tuple))
        incorrect = formats.require(row, "incorrect_answers", where, (list, tuple))
        items.append((question, best, list(correct), list(incorrect), where))
    items.sort(key=lambda item: item[0])
    examples = [formats.truthfulqa(f"q{i:04d}", *item) for i, item in enumerate(items)]
    order = list(range(len(examples)))
    random.Random(CARVE_SEED).shuffle(order)
    half = (len(examples) + 1) // 2
    test_idx = order[:half] if task.extra["fold"] == 0 else order[half:]
    rest = order[half:] if task.extra["fold"] == 0 else order[:half]
    dev_idx, train_idx = rest[:TRUTHFULQA_DEV], rest[TRUTHFULQA_DEV:]
    pick = lambda idx: [examples[i] for i in sorted(idx)]  # noqa: E731
    return Pools(pick(train_idx), pick(dev_idx), pick(test_idx), f"hub {source}")


def _clutrr_example(row: dict, where: str, split: str, index: int) -> Example:
    instruction, answer = formats.clutrr(row, where)
    example_id = str(row.get("id") or f"{split}-{index:06d}")
    return Example(id=example_id, prompt=build_prompt(instruction), answer=answer)
