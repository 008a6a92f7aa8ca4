"""Read a frozen model's activations at the last token of (prompt, continuation) texts.

The inference-time methods (RepE, ITI) build their vectors from these: the residual stream after
chosen decoder layers (RepE) or each head's output before ``o_proj`` (ITI). A text is encoded
as training encodes it, the prompt with the tokenizer's special tokens (BOS) followed by the
continuation without, so the activations are those the model has on a training row.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from jola_ray.editing.hooked import output_tensor


@torch.no_grad()
def last_token_activations(
    model: nn.Module,
    tokenizer,
    texts: Sequence[tuple[str, str]],
    modules: Sequence[nn.Module],
    read: str = "output",
    batch_size: int = 16,
) -> list[torch.Tensor]:
    """One fp32 CPU tensor ``(len(texts), width)`` per module: its output (``read="output"``)
    or its first input (``read="input"``) at each text's last token."""
    prompts = tokenizer([p for p, _ in texts], add_special_tokens=True)["input_ids"]
    conts = tokenizer([c for _, c in texts], add_special_tokens=False)["input_ids"]
    rows = [[*p, *c] for p, c in zip(prompts, conts, strict=True)]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    device = model.get_input_embeddings().weight.device
    captured: list[list[torch.Tensor]] = [[] for _ in modules]
    current: dict[str, torch.Tensor] = {}

    def grab(index, module, args, output=None):
        x = args[0] if read == "input" else output_tensor(output)  # (batch, seq, width)
        captured[index].append(x[torch.arange(x.shape[0]), current["last"]].float().cpu())

    handles = []
    for i, module in enumerate(modules):
        if read == "input":
            handles.append(module.register_forward_pre_hook(lambda m, a, i=i: grab(i, m, a)))
        else:
            handles.append(module.register_forward_hook(lambda m, a, o, i=i: grab(i, m, a, o)))
    was_training = model.training
    model.eval()
    try:
        for start in range(0, len(rows), batch_size):
            chunk = rows[start : start + batch_size]
            width = max(len(r) for r in chunk)
            ids = torch.full((len(chunk), width), pad, dtype=torch.long)  # right-padded
            mask = torch.zeros((len(chunk), width), dtype=torch.long)
            for r, tokens in enumerate(chunk):
                ids[r, : len(tokens)] = torch.tensor(tokens, dtype=torch.long)
                mask[r, : len(tokens)] = 1
            current["last"] = (mask.sum(dim=1) - 1).to(device)  # (batch,) last real token
            model(input_ids=ids.to(device), attention_mask=mask.to(device), use_cache=False)
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    return [torch.cat(parts) for parts in captured]
