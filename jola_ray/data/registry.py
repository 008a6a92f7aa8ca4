"""The task registry: task name -> how it is loaded, prompted, extracted and scored.

``get_task(name)`` and ``list_tasks()`` read one table built at import time; a user adds a task of
their own with ``register_custom_task`` (files in the documented JSONL format) or uses the
built-in ``custom`` task with ``load_splits(..., data_dir=...)``.

``task.extra["loader"]`` says which source code builds its pools: ``commonsense``,
``mmlu_pro``, ``gem``, ``truthfulqa``, ``clutrr``, ``mquake``, ``demo`` or ``custom``.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
from pathlib import Path

from jola_ray.data.demo import DEMO_TASKS
from jola_ray.data.task import Task, label_alternation
from jola_ray.errors import DataError, UnknownTaskError

GEM_METRICS = ("bleu", "rougeL", "rouge1", "rouge2", "chrf")

# task -> (LLM-Adapters dir, labels, hub id, hub config, hub splits: train, validation or None, test)
_COMMONSENSE = {
    "arc_c": (
        "ARC-Challenge",
        5,
        "answer",
        "allenai/ai2_arc",
        "ARC-Challenge",
        ("train", "validation", "test"),
    ),
    "arc_e": (
        "ARC-Easy",
        5,
        "answer",
        "allenai/ai2_arc",
        "ARC-Easy",
        ("train", "validation", "test"),
    ),
    "boolq": ("boolq", 0, "", "google/boolq", None, ("train", None, "validation")),
    "hellaswag": ("hellaswag", 4, "ending", "Rowan/hellaswag", None, ("train", None, "validation")),
    "obqa": (
        "openbookqa",
        4,
        "answer",
        "allenai/openbookqa",
        "main",
        ("train", "validation", "test"),
    ),
    "piqa": ("piqa", 2, "solution", "baber/piqa", None, ("train", None, "validation")),
    "siqa": ("social_i_qa", 3, "answer", "lighteval/siqa", None, ("train", None, "validation")),
    "winogrande": (
        "winogrande",
        2,
        "option",
        "allenai/winogrande",
        "winogrande_xl",
        ("train", None, "validation"),
    ),
}
# Other folder names users give the commonsense tasks (matched ignoring case, like the others).
_FOLDER_ALIASES = {"siqa": ("social_iqa",), "obqa": ("openbookqa_main",)}
# The reference evaluator's vocabularies (jola.md §4): ARC/OBQA/SIQA share answer1..answer5.
_PATTERNS = {
    "answer": "answer1|answer2|answer3|answer4|answer5",
    "ending": "ending1|ending2|ending3|ending4",
    "solution": "solution1|solution2",
    "option": "option1|option2",
    "": "true|false",
}
# Alternative hub ids tried after the first (script repos load through their parquet branch).
_HUB_FALLBACKS = {
    "piqa": (("ybisk/piqa", None, "refs/convert/parquet"),),
    "siqa": (("allenai/social_i_qa", None, "refs/convert/parquet"),),
}

MMLU_PRO_DOMAINS = (
    "biology", "business", "chemistry", "computer_science", "economics", "engineering", "health",
    "history", "law", "math", "other", "philosophy", "physics", "psychology",
)  # fmt: skip

# task -> (hub id, config, splits: train, validation or None, test)
_GEM = {
    "common_gen": ("GEM/common_gen", None, ("train", None, "validation")),  # test refs private
    "e2e_nlg": ("GEM/e2e_nlg", None, ("train", "validation", "test")),
    "web_nlg": ("GEM/web_nlg", "en", ("train", "validation", "test")),
    "xsum": ("GEM/xsum", None, ("train", "validation", "test")),
}

ALIASES = {
    "truthfulqa": "truthfulqa_fold0",
    "e2e": "e2e_nlg",
    "mmlu_pro_cs": "mmlu_pro_computer_science",
}


def _builtin_tasks() -> dict[str, Task]:
    tasks: dict[str, Task] = {}
    for name, (dirname, count, word, hub_id, config, splits) in _COMMONSENSE.items():
        labels = ("true", "false") if not word else tuple(f"{word}{i}" for i in range(1, count + 1))
        tasks[name] = Task(
            name=name,
            benchmark="commonsense",
            kind="classification",
            metrics=("accuracy",),
            primary_metric="accuracy",
            labels=labels,
            label_pattern=_PATTERNS[word],
            max_new_tokens=16,
            description=f"{dirname} in the LLM-Adapters instruction format",
            hub_ids=(hub_id,) + tuple(f[0] for f in _HUB_FALLBACKS.get(name, ())),
            extra={
                "loader": "commonsense",
                "dirname": dirname,
                "folder_aliases": _FOLDER_ALIASES.get(name, ()),
                "hub": ((hub_id, config, None), *_HUB_FALLBACKS.get(name, ())),
                "hub_splits": splits,
            },
        )
    for domain in MMLU_PRO_DOMAINS:
        name = f"mmlu_pro_{domain}"
        tasks[name] = Task(
            name=name,
            benchmark="mmlu_pro",
            kind="classification",
            metrics=("accuracy",),
            primary_metric="accuracy",
            labels=tuple("ABCDEFGHIJ"),
            label_pattern="A|B|C|D|E|F|G|H|I|J",
            max_new_tokens=16,
            description=f"MMLU-Pro, category {domain.replace('_', ' ')}, options A..J",
            hub_ids=("TIGER-Lab/MMLU-Pro",),
            extra={
                "loader": "mmlu_pro",
                "dirname": name,
                "category": domain.replace("_", " "),
                "hub": (("TIGER-Lab/MMLU-Pro", None, None),),
            },
        )
    for name, (hub_id, config, splits) in _GEM.items():
        tasks[name] = Task(
            name=name,
            benchmark="gem",
            kind="generation",
            metrics=GEM_METRICS,
            primary_metric="bleu",
            max_new_tokens=64,
            description=f"GEM {name}: data-to-text / summarisation, reference target",
            hub_ids=(hub_id,),
            extra={
                "loader": "gem",
                "dirname": name,
                "hub": ((hub_id, config, "refs/convert/parquet"), (hub_id, config, None)),
                "hub_splits": splits,
            },
        )
    for fold in (0, 1):
        name = f"truthfulqa_fold{fold}"
        tasks[name] = Task(
            name=name,
            benchmark="lofit",
            kind="multiple_choice",
            metrics=("mc1", "mc2"),
            primary_metric="mc1",
            training="dpo",
            max_new_tokens=64,
            description=f"TruthfulQA, ITI/LoFiT 2-fold split, fold {fold} held out; DPO, MC1/MC2",
            hub_ids=("truthfulqa/truthful_qa",),
            split_sizes=(None, None, None),
            extra={
                "loader": "truthfulqa",
                "fold": fold,
                "hub": (("truthfulqa/truthful_qa", "generation", None),),
            },
        )
    tasks["clutrr"] = Task(
        name="clutrr",
        benchmark="lofit",
        kind="generation",
        metrics=("exact_match",),
        primary_metric="exact_match",
        max_new_tokens=16,
        description="CLUTRR 2-hop kinship (task_1.2), LoFiT prompt, exact match",
        hub_ids=("CLUTRR/v1",),
        split_sizes=(300, None, None),
        extra={
            "loader": "clutrr",
            "hub": (
                ("CLUTRR/v1", "gen_train23_test2to10", "refs/convert/parquet"),
                ("CLUTRR/v1", "gen_train23_test2to10", None),
            ),
        },
    )
    tasks["mquake"] = Task(
        name="mquake",
        benchmark="lofit",
        kind="generation",
        metrics=("exact_match",),
        primary_metric="exact_match",
        max_new_tokens=16,
        description="MQuAKE-CF-3k-v2 multi-hop edited QA (LoFiT split), exact match with aliases",
        split_sizes=(None, None, None),
        extra={"loader": "mquake"},
    )
    for name, (labels, _) in DEMO_TASKS.items():
        tasks[name] = Task(
            name=name,
            benchmark="demo",
            kind="classification",
            metrics=("accuracy",),
            primary_metric="accuracy",
            labels=labels,
            label_pattern=label_alternation(labels),
            max_new_tokens=4,
            description="synthetic demo task (generated, no files)",
            split_sizes=(128, 64, 100),
            extra={"loader": "demo"},
        )
    tasks["custom"] = _custom_task("custom", None, "exact_match", None, "generation")
    return tasks


def _custom_task(name, path, metric, labels, kind, max_new_tokens=None) -> Task:
    return Task(
        name=name,
        benchmark="custom",
        kind=kind,
        metrics=(metric,),
        primary_metric=metric,
        labels=labels,
        label_pattern=label_alternation(labels) if labels else None,
        max_new_tokens=max_new_tokens or (16 if labels else 64),
        description="user task from JSONL files (instruction, answer, optional split)",
        extra={"loader": "custom", "path": path},
    )


_REGISTRY: dict[str, Task] = _builtin_tasks()
_BUILTIN_NAMES = frozenset(_REGISTRY)


def list_tasks() -> list[Task]:
    """Every registered task, in registry order (commonsense, MMLU-Pro, GEM, LoFiT, demo, custom)."""
    return list(_REGISTRY.values())


def get_task(name: str) -> Task:
    """The task called ``name`` (aliases: ``truthfulqa`` -> fold 0, ``e2e`` -> ``e2e_nlg``)."""
    key = ALIASES.get(name, name)
    if key in _REGISTRY:
        return _REGISTRY[key]
    known = list(_REGISTRY) + list(ALIASES)
    close = difflib.get_close_matches(str(name), known, n=3, cutoff=0.6)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    raise UnknownTaskError(f"unknown task {name!r}.{hint} Known tasks: {', '.join(_REGISTRY)}")


def register_custom_task(
    name: str,
    path: str | Path,
    metric: str | None = None,
    labels: tuple[str, ...] | list[str] | None = None,
    max_new_tokens: int | None = None,
    split_sizes: tuple[int | None, int | None, int | None] = (200, 200, None),
) -> Task:
    """Register a task whose examples are in JSONL files (see docs/data.md) and return it.

    ``path`` is a directory with ``train.jsonl``/``dev.jsonl``/``test.jsonl`` or one ``.jsonl``
    file whose rows carry ``split``. With ``labels`` the task is a classification task scored by
    accuracy (the default metric) and rows whose answer is not a label are rejected; without,
    it is a generation task scored by ``metric`` (default ``exact_match``). Registration lives
    in the calling process only: a Ray worker must register it again (or use ``custom`` with a
    data dir).
    """
    if not re.fullmatch(r"[a-z][a-z0-9_]*", name):
        raise DataError(f"custom task name {name!r}: use lower-case letters, digits and _")
    if name in _BUILTIN_NAMES or name in ALIASES:
        raise DataError(f"custom task name {name!r} is a built-in task; choose another name")
    if not Path(path).exists():
        raise DataError(
            f"custom task {name!r}: {path} does not exist (expected a directory "
            "with train.jsonl/dev.jsonl/test.jsonl or one .jsonl file with 'split')"
        )
    labels = tuple(labels) if labels else None
    metric = metric or ("accuracy" if labels else "exact_match")
    task = _custom_task(
        name,
        str(path),
        metric,
        labels,
        "classification" if labels else "generation",
        max_new_tokens,
    )
    task = dataclasses.replace(task, split_sizes=split_sizes)
    _REGISTRY[name] = task
    return task


def unregister_task(name: str) -> None:
    """Remove a custom task (built-in tasks stay)."""
    if name in _BUILTIN_NAMES:
        raise DataError(f"{name!r} is a built-in task and cannot be removed")
    _REGISTRY.pop(name, None)
