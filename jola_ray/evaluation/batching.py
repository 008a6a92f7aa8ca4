"""Tokenize prompts once and cut them into left-padded batches, shortest padding first.

Padding is done here rather than by the tokenizer, so the caller's tokenizer is never mutated
(no ``pad_token`` or ``padding_side`` to set and restore); a tokenizer without a pad token pads
with its EOS id, which the attention mask hides.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch


def pad_id(tokenizer) -> int:
    """The id used for padding: the pad token, else EOS, else 0 (always masked out)."""
    for tid in (tokenizer.pad_token_id, tokenizer.eos_token_id):
        if isinstance(tid, int):
            return tid
    return 0


def length_sorted_batches(
    lengths: Sequence[int], batch_size: int, rows_per_item: Sequence[int] | None = None
) -> Iterator[list[int]]:
    """Indices grouped into batches of similar length (longest first, so memory peaks early).

    A batch holds at most ``batch_size`` rows; item ``i`` counts ``rows_per_item[i]`` rows (one
    each by default; label scoring: one per candidate of a prompt).
    """
    order = sorted(range(len(lengths)), key=lambda i: lengths[i], reverse=True)
    batch: list[int] = []
    rows = 0
    for i in order:
        size = 1 if rows_per_item is None else rows_per_item[i]
        if batch and rows + size > batch_size:
            yield batch
            batch, rows = [], 0
        batch.append(i)
        rows += size
    if batch:
        yield batch


def left_pad(rows: Sequence[Sequence[int]], pad: int, device) -> dict[str, torch.Tensor]:
    """``input_ids``, ``attention_mask`` and ``position_ids``, each (batch, max_len), left-padded.

    Position ids count real tokens only (0 at each row's first token), as ``generate`` does, so
    models with absolute positions see the same positions as an unpadded row.
    """
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        if row:
            ids[i, width - len(row) :] = torch.tensor(row, dtype=torch.long)
            mask[i, width - len(row) :] = 1
    positions = (mask.cumsum(dim=1) - 1).clamp(min=0)
    return {
        "input_ids": ids.to(device),
        "attention_mask": mask.to(device),
        "position_ids": positions.to(device),
    }


def encode_prompts(tokenizer, prompts: Sequence[str]) -> list[list[int]]:
    """Token ids of each prompt, with the tokenizer's special tokens (BOS) as in training."""
    return [list(ids) for ids in tokenizer(list(prompts), add_special_tokens=True)["input_ids"]]


def model_device(model) -> torch.device:
    """Where inputs go: the device of the input embeddings (first shard under a device map)."""
    return model.get_input_embeddings().weight.device
