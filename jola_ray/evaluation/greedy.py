"""Greedy decoding from a prefill: the first token for free, the rest for the rows that need it.

``GreedyDecoder.add(rows, slots)`` prefills one batch (``prefill``: the prompts' shared prefix
once) and takes every row's first new token from that forward: the argmax that ``generate``'s
first greedy step takes. A row that is done after it (EOS, a complete first line, a decided
label, or ``max_new_tokens`` 1) costs that forward alone. The other rows wait, with their rows
of the prefill's KV cache, and continue in ``generate`` together: the waiting rows of several
batches are merged into one call (up to ``WAIT_BATCHES x batch_size`` rows per copy) when every cache layer is
a plain ``DynamicLayer`` (keys and values left-padded to the longest prompt, the attention mask
0 there, positions unchanged). One decode step of a small model costs about what it costs for
one row, so a dev split whose rows mostly stop after their first token pays a few decode
steps per evaluation instead of a few per batch. Caches of other layouts (sliding-window
layers) continue batch by batch.

The text of every row is what ``generate`` alone would give: greedy decoding of a row does not
depend on the other rows of its batch (the tests compare with transformers' own decoding).

``copies`` (a trial pack's live configurations, ``jola_ray.editing.pack``): each batch runs
``copies`` times, member-major (copy ``m``'s rows at ``[m*b, (m+1)*b)``), and every forward,
merged continuations included, keeps that layout: the pack's edit splits rows into equal,
member-major blocks.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from transformers.cache_utils import DynamicLayer

from jola_ray.evaluation.prefill import cache_kwarg, prefill

# Waiting rows continue once there are this many batches' worth of them (per copy): a decode
# step's rows hold only their KV cache, so a merged step of 4 x batch_size rows needs far less
# memory than a prefill of batch_size prompts, and takes about as long as a step of one row.
WAIT_BATCHES = 4


@dataclass
class _Waiting:
    """One batch's rows that continue after their first token.

    ``ids``: (copies * u, width + 1), the prompts (left-padded) and the first new token;
    ``mask``: (copies * u, width), the prompts' attention mask; ``cache``: their KV cache rows;
    ``slots``: per row, where its text goes (copy, example); ``keep``: per row, False where the
    row was done after its first token in its own copy (it continues only because the same
    example continues in another copy) and keeps that token's text.
    """

    ids: torch.Tensor
    mask: torch.Tensor
    cache: object
    slots: list[tuple[int, int]]
    keep: list[bool]
    rows_per_copy: int


class GreedyDecoder:
    """Greedy continuations, batch by batch; see the module docstring.

    ``criteria(width) -> StoppingCriteriaList`` builds the per-row stopping criteria of a
    ``generate`` call whose prompts are ``width`` tokens wide; ``config`` is the greedy
    ``GenerationConfig``.
    """

    def __init__(
        self,
        model,
        tokenizer,
        config,
        criteria: Callable,
        pad: int,
        device,
        batch_size: int,
        copies: int = 1,
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.config = config
        self.criteria = criteria
        self.pad = pad
        self.device = device
        self.batch_size = batch_size
        self.copies = copies
        self.waiting: list[_Waiting] = []

    def add(self, rows: list[list[int]], examples: list[int]) -> Iterator[tuple[int, int, str]]:
        """Prefill ``rows`` (the token ids of the prompts of ``examples``); yields
        ``(copy, example, text)`` of every row done after its first token, and of waiting rows
        whose continuation ran."""
        copies, b = self.copies, len(rows)
        pre = prefill(self.model, rows, self.pad, self.device, copies)
        first = pre.logits.argmax(dim=-1)  # (copies * b,)
        width = pre.input_ids.shape[1]
        ids = torch.cat([pre.input_ids, first[:, None]], dim=1)  # (copies * b, width + 1)
        done = self.criteria(width)(ids, None)
        eos = self.config.eos_token_id
        for token in [eos] if isinstance(eos, int) else list(eos or ()):
            done |= first == token
        if self.config.max_new_tokens <= 1:
            done[:] = True
        texts = self.tokenizer.batch_decode(first[:, None], skip_special_tokens=True)
        # an example continues in every copy if it does in one: equal, member-major blocks
        undone = sorted({r % b for r in torch.nonzero(~done).flatten().tolist()})
        for r, text in enumerate(texts):
            if r % b not in undone or bool(done[r]):
                yield r // b, examples[r % b], text
        if not undone:
            return
        keep = [m * b + r for m in range(copies) for r in undone]
        index = torch.tensor(keep, device=self.device)
        cache = pre.cache
        cache.batch_select_indices(index)
        self.waiting.append(
            _Waiting(
                ids=ids[index],
                mask=pre.attention_mask[index],
                cache=cache,
                slots=[(k // b, examples[k % b]) for k in keep],
                keep=[not bool(done[k]) for k in keep],
                rows_per_copy=len(undone),
            )
        )
        if sum(w.rows_per_copy for w in self.waiting) >= WAIT_BATCHES * self.batch_size:
            yield from self.flush()

    def flush(self) -> Iterator[tuple[int, int, str]]:
        """Continue every waiting row (merged where the caches allow); yields their texts."""
        waiting, self.waiting = self.waiting, []
        if not waiting:
            return
        groups = [_merge(waiting, self.copies, self.pad)] if _mergeable(waiting) else waiting
        for w in groups:
            yield from self._continue(w)

    def _continue(self, w: _Waiting) -> Iterator[tuple[int, int, str]]:
        width = w.mask.shape[1]
        cfg = self.config
        cont = cfg.__class__(**{**cfg.to_dict(), "max_new_tokens": cfg.max_new_tokens - 1})
        out = self.model.generate(
            input_ids=w.ids,
            attention_mask=torch.cat([w.mask, w.mask.new_ones(len(w.mask), 1)], dim=1),
            generation_config=cont,
            stopping_criteria=self.criteria(width),
            **{cache_kwarg(self.model): w.cache},
        )
        # out: (rows, width + 1 + new tokens); the first new token is at column ``width``
        texts = self.tokenizer.batch_decode(out[:, width:], skip_special_tokens=True)
        for (copy, example), keep, text in zip(w.slots, w.keep, texts, strict=True):
            if keep:
                yield copy, example, text


def _mergeable(waiting: list[_Waiting]) -> bool:
    """More than one batch waits and every cache layer is a plain ``DynamicLayer`` (keys and
    values ``(rows, heads, positions, head_dim)``, every position kept)."""
    if len(waiting) < 2:
        return False
    for w in waiting:
        layers = getattr(w.cache, "layers", None)
        if not layers or any(type(layer) is not DynamicLayer for layer in layers):
            return False
        if any(layer.keys is None or layer.keys.dim() != 4 for layer in layers):
            return False
    return len({len(w.cache.layers) for w in waiting}) == 1


def _merge(waiting: list[_Waiting], copies: int, pad: int) -> _Waiting:
    """The waiting rows of several batches as one: left-padded to the widest prompt (mask 0,
    cache zeros there), rows reordered member-major over all of them."""
    width = max(w.mask.shape[1] for w in waiting)

    def left(t: torch.Tensor, value, dim: int) -> torch.Tensor:
        missing = width - t.shape[dim]
        if missing == 0:
            return t
        shape = list(t.shape)
        shape[dim] = missing
        return torch.cat([t.new_full(shape, value), t], dim=dim)

    # member-major over all batches: copy m's rows of batch 0, of batch 1, ..., then copy m + 1
    offsets, total = [], 0
    for w in waiting:
        offsets.append(total)
        total += len(w.slots)
    order = [
        offset + m * w.rows_per_copy + r
        for m in range(copies)
        for w, offset in zip(waiting, offsets, strict=True)
        for r in range(w.rows_per_copy)
    ]
    index = torch.tensor(order, device=waiting[0].ids.device)
    ids = torch.cat([left(w.ids[:, :-1], pad, 1) for w in waiting])  # (rows, width)
    ids = torch.cat([ids, torch.cat([w.ids[:, -1:] for w in waiting])], dim=1)[index]
    mask = torch.cat([left(w.mask, 0, 1) for w in waiting])[index]  # (rows, width)
    cache = waiting[0].cache
    for i, layer in enumerate(cache.layers):
        # keys/values: (rows, heads, positions, head_dim), padded on the positions' left
        layer.keys = torch.cat([left(w.cache.layers[i].keys, 0.0, 2) for w in waiting])[index]
        layer.values = torch.cat([left(w.cache.layers[i].values, 0.0, 2) for w in waiting])[index]
    slots = [s for w in waiting for s in w.slots]
    keep = [k for w in waiting for k in w.keep]
    return _Waiting(
        ids=ids,
        mask=mask,
        cache=cache,
        slots=[slots[i] for i in order],
        keep=[keep[i] for i in order],
        rows_per_copy=sum(w.rows_per_copy for w in waiting),
    )
