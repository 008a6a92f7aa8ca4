"""The task and example types every other layer sees.

A ``Task`` says how a benchmark task is prompted, trained and scored; an ``Example`` is one
prompt with its target. Sources (hub or local files) produce examples; the evaluation package
scores predictions against them; the training package turns them into TRL datasets.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

TaskKind = Literal["classification", "generation", "multiple_choice"]
TrainingFormat = Literal["sft", "dpo"]

PROMPT_TEMPLATE = (
    "Below is an instruction that describes a task. Write a response that appropriately "
    "completes the request.\n ### Instruction:\n{instruction}\n\n### Response:\n"
)
RESPONSE_MARKER = "### Response:"


@dataclass(frozen=True)
class Example:
    """One task example.

    ``prompt`` is the full prompt (template included, ending in ``"### Response:\\n"``) and
    ``answer`` the training target (a bare label for classification). TruthfulQA also carries
    ``chosen``/``rejected`` (a DPO pair) and ``choices`` with the indices of the ``correct``
    ones (MC1/MC2 scoring); MQuAKE carries answer ``aliases``.
    """

    id: str
    prompt: str
    answer: str
    chosen: str | None = None
    rejected: str | None = None
    choices: tuple[str, ...] | None = None
    correct: tuple[int, ...] | None = None
    aliases: tuple[str, ...] = ()


@dataclass(frozen=True)
class Splits:
    """The train, dev and test examples of one task for one sampling seed."""

    train: list[Example]
    dev: list[Example]
    test: list[Example]

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.train), "dev": len(self.dev), "test": len(self.test)}


@dataclass(frozen=True)
class Task:
    """How a task is prompted, trained and scored.

    ``metrics`` are reported in percent; ``primary_metric`` (higher is better) selects
    configurations. ``labels`` is the closed label set of a classification task (None for
    open generation); ``label_pattern`` the regex whose first match in the first response line
    is the prediction.
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
    extra: dict = field(default_factory=dict, compare=False, hash=False)
