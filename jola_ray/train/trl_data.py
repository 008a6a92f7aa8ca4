"""Task examples -> the datasets TRL's trainers consume.

SFT gets pre-tokenized rows: ``input_ids`` are the prompt's tokens (exactly as evaluation
tokenizes the prompt) followed by the answer's, and ``labels`` mask the prompt with -100, so the
loss covers the answer tokens only. Tokenizing the two parts separately keeps the training
context identical to the inference context (TRL's own prompt-completion path re-tokenizes
prompt + answer and splits at the longest common prefix) and lets us leave out the EOS that
TRL would append: the reference trains without one (``append_eos`` adds it). DPO (TruthfulQA,
as LoFiT) gets ``prompt``/``chosen``/``rejected`` rows.
"""

from __future__ import annotations

from collections.abc import Sequence

from jola_ray.data.task import Example
from jola_ray.errors import DataError
from jola_ray.evaluation.batching import encode_prompts


def sft_dataset(examples: Sequence[Example], tokenizer, append_eos: bool = False):
    """Pre-tokenized ``input_ids``/``labels`` rows for ``SFTTrainer`` (loss on the answer only)."""
    from datasets import Dataset

    prompts = encode_prompts(tokenizer, [e.prompt for e in examples])  # as evaluation does
    answers = tokenizer([e.answer for e in examples], add_special_tokens=False)["input_ids"]
    input_ids, labels = [], []
    for prompt_ids, answer_ids in zip(prompts, answers, strict=True):
        answer_ids = list(answer_ids)
        if append_eos:
            answer_ids.append(tokenizer.eos_token_id)
        input_ids.append([*prompt_ids, *answer_ids])
        labels.append([-100] * len(prompt_ids) + answer_ids)
    return Dataset.from_dict({"input_ids": input_ids, "labels": labels})


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
