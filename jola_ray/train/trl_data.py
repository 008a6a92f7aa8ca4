"""Task examples -> the datasets TRL's trainers consume.

SFT gets prompt-completion rows: ``prompt`` is the full template ending in
``"### Response:\\n"`` and ``completion`` the bare answer, so with ``completion_only_loss`` the
loss covers the answer tokens (and the EOS TRL appends) only. DPO (TruthfulQA, as LoFiT) gets
``prompt``/``chosen``/``rejected`` rows.
"""

from __future__ import annotations

from collections.abc import Sequence

from jola_ray.data.task import Example
from jola_ray.errors import DataError


def sft_dataset(examples: Sequence[Example]):
    """Prompt-completion rows for ``SFTTrainer``."""
    from datasets import Dataset

    return Dataset.from_dict(
        {"prompt": [e.prompt for e in examples], "completion": [e.answer for e in examples]}
    )


def dpo_dataset(examples: Sequence[Example], split: str):
    """Preference rows for ``DPOTrainer``; every example must carry ``chosen`` and ``rejected``."""
    from datasets import Dataset

    missing = [e.id for e in examples if not e.chosen or not e.rejected]
    if missing:
        raise DataError(
            f"{split} split: {len(missing)} example(s) lack a chosen/rejected pair for DPO "
            f"training (first: {missing[:3]})"
        )
    return Dataset.from_dict(
        {
            "prompt": [e.prompt for e in examples],
            "chosen": [e.chosen for e in examples],
            "rejected": [e.rejected for e in examples],
        }
    )
