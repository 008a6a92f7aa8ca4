"""Task examples -> the datasets TRL's trainers consume.

SFT gets pre-tokenized rows: ``input_ids`` are the prompt's tokens (exactly as evaluation
tokenizes the prompt) followed by the answer's, and ``labels`` mask the prompt with -100, so the
loss covers the answer tokens only. Tokenizing the two parts separately keeps the training
context identical to the inference context (TRL's own prompt-completion path re-tokenizes
prompt + answer and splits at the longest common prefix) and lets us leave out the EOS that
TRL would append: the reference trains without one (``append_eos`` adds it). DPO (TruthfulQA,
as LoFiT) gets ``prompt``/``chosen``/``rejected`` rows.

Length: nothing is dropped. ``max_length`` None (the default) is the longest example given
(measured with the model's tokenizer), so every example fits whole. With a ``max_length`` an
example longer than it keeps its answer and the end of its prompt (the response marker and the
instruction's last tokens): the prompt is cut from the left (after its BOS token, if it has one), and
the example's id is listed in ``LengthFit.truncated``. An answer too long for ``max_length``
even with a minimal prompt is a ``DataError`` naming the example.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from jola_ray.data.task import RESPONSE_MARKER, Example
from jola_ray.errors import DataError
from jola_ray.evaluation.answer_loss import answer_rows
from jola_ray.evaluation.batching import encode_prompts


@dataclass
class LengthFit:
    """How one split's examples were fitted to the token limit."""

    max_length: int  # the limit applied (the longest example when none was configured)
    longest: int  # the longest example, in tokens, before any cut
    truncated: list[str] = field(default_factory=list)  # ids whose prompt was cut from the left


def _tokenized(examples: Sequence[Example], tokenizer, append_eos: bool):
    # prompts tokenized as evaluation does; the dev loss tokenizes through the same function
    rows = answer_rows(
        tokenizer, [e.prompt for e in examples], [e.answer for e in examples], append_eos
    )
    return [p for p, _ in rows], [a for _, a in rows]


def sft_lengths(examples: Sequence[Example], tokenizer, append_eos: bool = False) -> list[int]:
    """Tokens of each example's training row (prompt + answer), as ``sft_rows`` builds it."""
    prompts, answers = _tokenized(examples, tokenizer, append_eos)
    return [len(p) + len(a) for p, a in zip(prompts, answers, strict=True)]


def sft_rows(
    examples: Sequence[Example],
    tokenizer,
    append_eos: bool = False,
    max_length: int | None = None,
    split: str = "train",
):
    """(Dataset of ``input_ids``/``labels`` rows for ``SFTTrainer``, ``LengthFit``).

    Loss on the answer only; long prompts cut from the left (see the module docstring).
    """
    from datasets import Dataset

    prompts, answers = _tokenized(examples, tokenizer, append_eos)
    longest = max((len(p) + len(a) for p, a in zip(prompts, answers, strict=True)), default=0)
    fit = LengthFit(max_length=max_length or longest, longest=longest)
    marker = len(tokenizer("\n" + RESPONSE_MARKER + "\n", add_special_tokens=False)["input_ids"])
    input_ids, labels = [], []
    for example, prompt_ids, answer_ids in zip(examples, prompts, answers, strict=True):
        if len(prompt_ids) + len(answer_ids) > fit.max_length:
            head = prompt_ids[:1] if prompt_ids[:1] == [tokenizer.bos_token_id] else []
            keep = fit.max_length - len(answer_ids) - len(head)  # prompt tokens after BOS
            if keep < marker:
                raise DataError(
                    f"{split} example {example.id!r}: max_length {fit.max_length} leaves no room "
                    f"for its answer ({len(answer_ids)} tokens) after the response marker; raise "
                    "max_length or leave it unset (the longest example is then the limit)"
                )
            prompt_ids = [*head, *prompt_ids[len(prompt_ids) - keep :]]
            fit.truncated.append(example.id)
        input_ids.append([*prompt_ids, *answer_ids])
        labels.append([-100] * len(prompt_ids) + answer_ids)
    return Dataset.from_dict({"input_ids": input_ids, "labels": labels}), fit


def sft_dataset(examples: Sequence[Example], tokenizer, append_eos: bool = False):
    """Pre-tokenized ``input_ids``/``labels`` rows for ``SFTTrainer`` (loss on the answer only),
    every example whole."""
    return sft_rows(examples, tokenizer, append_eos)[0]


def dpo_lengths(examples: Sequence[Example], tokenizer) -> list[int]:
    """Tokens of each preference row's longer side (prompt + the longer of chosen/rejected)."""
    prompts = encode_prompts(tokenizer, [e.prompt for e in examples])
    chosen = tokenizer([e.chosen or "" for e in examples], add_special_tokens=False)["input_ids"]
    rejected = tokenizer([e.rejected or "" for e in examples], add_special_tokens=False)[
        "input_ids"
    ]
    return [len(p) + max(len(c), len(r)) for p, c, r in zip(prompts, chosen, rejected, strict=True)]


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
