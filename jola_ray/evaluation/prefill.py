"""One forward over a batch of prompts that leaves a KV cache, sharing the prompts' common prefix.

Evaluation runs the same template in front of every example: an instruction ("Please choose
the correct answer to the question: ..."), a chat header, a few-shot primer, or a task's fixed
question ("Vowel? "). ``prefill`` computes the tokens that every prompt of a batch starts with
once (one row), copies that part of the KV cache to every row, and runs only the rest of each
prompt, left-padded after the shared part:

    rows:   [shared prefix P tokens][pad ... pad][own suffix]   (attention mask 0 on the pads)

The positions continue from the prefix (``P + i`` for the ``i``-th real suffix token), so every
row attends to exactly the keys and positions it has unshared: the logits are the unshared
ones up to float rounding. A batch whose prompts share fewer than ``MIN_SHARED`` tokens (or a
single prompt) is prefilled as one left-padded block, as before. So is every batch of a model
with a hook on the model itself: such an edit reads whole calls (LoReFT finds its prompt
positions in the call's inputs and leaves a call that continues a cache alone), so the prompt
must arrive in one call.

``copies`` (trial packs, ``jola_ray.editing.pack``): the batch runs ``copies`` times in one
forward, member-major (rows ``[m * b, (m + 1) * b)`` are copy ``m``), so each configuration of a
pack edits its own copy. The shared prefix then runs once per copy (``copies`` rows), since
every configuration edits it differently.

What is returned feeds either scoring (``scoring.continuation_logprobs``: the candidates'
tokens follow in one more forward) or greedy decoding (``generation``: the first new token is
the argmax of ``logits``; rows not done after it continue from ``cache``).
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from jola_ray.evaluation.batching import left_pad

MIN_SHARED = 2  # below this a shared prefix saves less than its extra forward costs


@dataclass
class Prefilled:
    """A prefilled batch of ``n = copies * b`` rows (member-major copies of ``b`` prompts).

    ``logits``: (n, vocab), the next-token logits after each prompt. ``cache``: the KV cache of
    every prompt token, (n, ..., ``width``, ...). ``attention_mask``: (n, width), 1 on real
    tokens (the shared prefix, then each row's own suffix after its left padding).
    ``input_ids``: (n, width), the tokens the cache holds (pads where the mask is 0).
    ``lengths``: (n,) real tokens per row, the position of the next token.
    """

    logits: torch.Tensor
    cache: object
    attention_mask: torch.Tensor
    input_ids: torch.Tensor
    lengths: torch.Tensor
    shared: int  # tokens of the shared prefix (0: none)


def cache_kwarg(model) -> str:
    """The forward argument for a KV cache: ``cache`` (transformers >= 5.2x) or the older name."""
    params = inspect.signature(model.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def output_cache(out):
    """The KV cache a forward returned (``cache``, or ``past_key_values`` in older releases)."""
    return out.cache if hasattr(out, "cache") else out.past_key_values


def shared_prefix_length(rows: Sequence[Sequence[int]]) -> int:
    """Tokens every row starts with, leaving each row at least one token of its own (its last
    token's logits must come from its own forward)."""
    if len(rows) < 2:
        return 0
    limit = min(len(r) for r in rows) - 1
    first = rows[0]
    n = 0
    while n < limit and all(r[n] == first[n] for r in rows):
        n += 1
    return n if n >= MIN_SHARED else 0


@torch.no_grad()
def prefill(model, rows: Sequence[Sequence[int]], pad: int, device, copies: int = 1) -> Prefilled:
    """Run ``rows`` (token ids of ``b`` prompts) through ``model`` with a KV cache; see the
    module docstring. The model is used as it is (the caller puts it in eval mode)."""
    b = len(rows)
    kwarg = cache_kwarg(model)
    whole_calls = bool(model._forward_pre_hooks or model._forward_hooks)
    shared = 0 if whole_calls else shared_prefix_length(rows)
    cache = None
    if shared:
        prefix = torch.tensor([list(rows[0][:shared])] * copies, device=device)  # (copies, P)
        out = model(input_ids=prefix, use_cache=True, logits_to_keep=1)
        cache = output_cache(out)
        cache.batch_repeat_interleave(b)  # (copies, ...) -> (copies * b, ...): member-major
    own = left_pad([r[shared:] for r in rows], pad, device)  # (b, W) each
    ids, mask = own["input_ids"], own["attention_mask"]
    positions = own["position_ids"] + shared  # the suffix continues after the prefix
    if copies > 1:  # (b, W) -> (copies * b, W), copy m at rows [m*b, (m+1)*b)
        ids, mask, positions = (torch.cat([t] * copies) for t in (ids, mask, positions))
    full_mask = mask
    if shared:
        full_mask = torch.cat([mask.new_ones(mask.shape[0], shared), mask], dim=1)  # (n, P + W)
    kwargs = {kwarg: cache} if cache is not None else {}
    out = model(
        input_ids=ids,
        attention_mask=full_mask,
        position_ids=positions,
        use_cache=True,
        logits_to_keep=1,
        **kwargs,
    )
    held = ids
    if shared:
        prefix_ids = ids.new_tensor(list(rows[0][:shared])).expand(ids.shape[0], shared)
        held = torch.cat([prefix_ids, ids], dim=1)  # (n, P + W): what the cache holds
    return Prefilled(
        logits=out.logits[:, -1],  # (n, 1, vocab) -> (n, vocab)
        cache=output_cache(out),
        attention_mask=full_mask,
        input_ids=held,
        lengths=full_mask.sum(dim=1),
        shared=shared,
    )
