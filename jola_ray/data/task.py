"""The task and example types every other layer sees.

A ``Task`` says how a benchmark task is prompted, trained and scored; an ``Example`` is one
prompt with its target. Sources (hub or local files) produce examples; the evaluation package
scores predictions against them; the training package turns them into TRL datasets.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

TaskKind = Literal["classification", "generation", "multiple_choice"]
TrainingFormat = Literal["sft", "dpo"]

PROMPT_TEMPLATE = (
    "Below is an instruction that describes a task. Write a response that appropriately "
    "completes the request.\n ### Instruction:\n{instruction}\n\n### Response:\n"
)
RESPONSE_MARKER = "### Response:"
# The paper samples its 200 training examples with seed 42.
DEFAULT_SEED = 42


def label_alternation(labels: tuple[str, ...]) -> str:
    """A regex alternation of the labels, longest first so "answer10" is not read as "answer1"."""
    return "|".join(re.escape(label) for label in sorted(labels, key=len, reverse=True))


def build_prompt(instruction: str) -> str:
    """The full prompt of an instruction: ``PROMPT_TEMPLATE`` filled in (JoLA's exact string)."""
    return PROMPT_TEMPLATE.format(instruction=instruction)


@dataclass(frozen=True)
class Example:
    """One task example.

    ``prompt`` is the full prompt (template included, ending in ``"### Response:\\n"``) and
    ``answer`` the training target (a bare label for classification: ``"answer2"``, ``"true"``,
    ``"C"``; the reference text for GEM; the answer string for CLUTRR/MQuAKE; the best answer
    for TruthfulQA).

    ``options`` are the labels this example offers, where a row lists its own (an ARC question
    with three or five options, its "Answer format:" line; MMLU-Pro without its N/A options);
    None means every label of the task. Label scoring and extraction read only these.

    ``aliases`` are the other accepted gold strings: MQuAKE's answer aliases; for GEM dev/test
    examples every reference of a multi-reference item (``answer`` is the first of them).

    TruthfulQA (LoFiT) also carries:

    * ``chosen``/``rejected``: the DPO pair (best answer, first incorrect answer), one per question
      as LoFiT builds it;
    * ``choices``: the question's correct answers (the best answer among them) followed by its
      incorrect answers, each closed with a period as TruthfulQA's scorer does;
    * ``correct``: the indices in ``choices`` of the correct answers (MC2 set: all correct vs
      all incorrect, i.e. the indices not in ``correct``);
    * ``best``: the index in ``choices`` of the best answer (MC1: ``choices[best]`` must score
      above every incorrect choice).
    """

    id: str
    prompt: str
    answer: str
    chosen: str | None = None
    rejected: str | None = None
    choices: tuple[str, ...] | None = None
    correct: tuple[int, ...] | None = None
    aliases: tuple[str, ...] = ()
    best: int | None = None
    options: tuple[str, ...] | None = None

    def labels_of(self, task: Task) -> tuple[str, ...] | None:
        """The labels this example is scored over: its own options, else the task's."""
        return self.options if self.options is not None else task.labels


@dataclass(frozen=True)
class Splits:
    """The train, dev and test examples of one task for one sampling seed."""

    train: list[Example]
    dev: list[Example]
    test: list[Example]

    asked: dict[str, int | None] = field(default_factory=dict)  # the sizes asked for, per split

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.train), "dev": len(self.dev), "test": len(self.test)}

    def short(self) -> dict[str, tuple[int, int]]:
        """Splits with fewer examples than asked: split -> (asked, used)."""
        used = self.sizes()
        return {
            split: (asked, used[split])
            for split, asked in self.asked.items()
            if asked is not None and used[split] < asked
        }

    def short_note(self) -> str:
        """``"train 18 of 200 asked, dev 17 of 200 asked"`` (empty when every split is full)."""
        return ", ".join(f"{s} {u} of {a} asked" for s, (a, u) in self.short().items())


@dataclass(frozen=True)
class Task:
    """How a task is prompted, trained and scored.

    ``metrics`` are reported in percent; ``primary_metric`` (higher is better) selects
    configurations. ``labels`` is the closed label set of a classification task (None for
    open generation); ``label_pattern`` the regex whose first match in the first response line
    is the prediction.

    ``split_sizes`` are the default (train, dev, test) sizes of ``load_splits`` (None: the whole
    split); ``hub_ids`` are the hub datasets it loads from, first choice first. ``extra`` holds per-task settings of the loaders (hub configs, the TruthfulQA fold, the path
    of a custom task).
    """

    name: str
    benchmark: str
    kind: TaskKind
    metrics: tuple[str, ...]
    primary_metric: str
    labels: tuple[str, ...] | None = None
    label_pattern: str | None = None
    training: TrainingFormat = "sft"
    max_new_tokens: int = 16
    description: str = ""
    hub_ids: tuple[str, ...] = ()
    split_sizes: tuple[int | None, int | None, int | None] = (200, 200, None)
    extra: dict = field(default_factory=dict, compare=False, hash=False)
