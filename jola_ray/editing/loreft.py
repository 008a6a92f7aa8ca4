"""LoReFT (Wu et al. 2024, "ReFT: Representation Finetuning for Language Models"; reference
library stanfordnlp/pyreft): on a decoder layer's output (the residual stream, pyvene's
``block_output``) at chosen prompt positions,

    h' = h + R^T (W h + b - R h)

with ``R`` (rank x hidden) of orthonormal rows, ``W`` (rank x hidden) and ``b`` (rank) learned.
``R^T`` (hidden x rank) is the Q factor of a free (hidden x rank) parameter, with the signs that
make R's diagonal positive, initialised by ``torch.nn.init.orthogonal_`` (so ``R^T`` starts as
that matrix); ``W h + b`` is an ``nn.Linear(hidden, rank)`` with PyTorch's default init (both
drawn from the edit's generator, for a seeded init). pyreft puts the same matrix under
``torch.nn.utils.parametrizations.orthogonal`` (Householder map for a non-square matrix); that
map reads the signs of its columns from the integer part of the parameter's diagonal, which any
AdamW weight decay moves below 1 in the first step, zeroing R (measured). The QR form has the
same parameter count and keeps R orthonormal whatever the optimizer does to the free matrix.

Positions: the first ``first`` and last ``last`` tokens of each prompt (``f7+l7``). With shared
weights one intervention per layer edits the union of the two sets (a position in both is edited
once, as pyvene's gather/scatter does); with separate weights a prefix intervention edits the
first positions and a suffix intervention the last ones (a position in both, in a prompt shorter
than ``first + last``, gets the prefix edit and then the suffix edit). Which tokens are the
prompt is read from the forward call itself (``PromptPositions``): real tokens
(``attention_mask`` 1) whose ``labels`` are -100 when labels are passed (training: the prompt is
masked out of the loss), all real tokens otherwise (a prompt at evaluation); a forward that
continues a non-empty KV cache feeds generated (or scored) tokens, which are not intervened on,
as in ReFT.
"""

from __future__ import annotations

import math
from functools import partial
from typing import Any

import torch
from torch import nn

from jola_ray.editing.hooked import HookedEdit, output_tensor, replace_output
from jola_ray.editing.sites import LayerSite, find_residual_sites, model_type_of


class OrthonormalColumns(nn.Module):
    """``weight``: a (rows x cols) matrix with orthonormal columns, the sign-fixed Q factor of
    the free parameter ``raw`` (rows >= cols)."""

    def __init__(self, rows: int, cols: int, generator: torch.Generator | None):
        super().__init__()
        self.raw = nn.Parameter(torch.empty(rows, cols))
        nn.init.orthogonal_(self.raw, generator=generator)

    @property
    def weight(self) -> torch.Tensor:
        q, r = torch.linalg.qr(self.raw)  # q: (rows, cols), r: (cols, cols)
        signs = torch.where(r.diagonal() < 0, -1.0, 1.0).to(q.dtype)  # unique Q: diag(r) > 0
        return q * signs


class LowRankIntervention(nn.Module):
    """``h + R^T (W h + b - R h)`` on (..., hidden) in fp32 (``rotate.weight`` is ``R^T``)."""

    def __init__(self, hidden: int, rank: int, dropout: float, generator: torch.Generator | None):
        super().__init__()
        self.rotate = OrthonormalColumns(hidden, rank, generator)  # R^T: (hidden, rank)
        self.source = nn.Linear(hidden, rank)  # W h + b: (hidden) -> (rank)
        # nn.Linear's default init (kaiming-uniform weight, uniform bias), from the generator.
        nn.init.kaiming_uniform_(self.source.weight, a=math.sqrt(5), generator=generator)
        bound = 1 / math.sqrt(hidden)
        nn.init.uniform_(self.source.bias, -bound, bound, generator=generator)
        self.dropout = nn.Dropout(dropout)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        r_t = self.rotate.weight  # (hidden, rank), orthonormal columns
        delta = self.dropout(self.source(h)) - h @ r_t  # (..., rank)
        return h + delta @ r_t.T  # (..., hidden)

    @staticmethod
    def count(hidden: int, rank: int) -> int:
        return 2 * hidden * rank + rank


class PromptPositions:
    """Per forward call: (batch, seq) masks of the first-p and last-p prompt positions, or None.

    A forward pre-hook on the whole model reads ``input_ids``/``inputs_embeds``,
    ``attention_mask``, ``labels`` and the KV cache of the call (see the module docstring).
    """

    def __init__(self, first: int, last: int) -> None:
        self.first, self.last = first, last
        self.masks: tuple[torch.Tensor, torch.Tensor] | None = None

    def hook(self, model: nn.Module):
        return model.register_forward_pre_hook(self._pre_hook, with_kwargs=True)

    def _pre_hook(self, module, args, kwargs):
        ids = kwargs.get("input_ids", args[0] if args else None)
        embeds = kwargs.get("inputs_embeds")
        shape = tuple(ids.shape[:2]) if ids is not None else tuple(embeds.shape[:2])
        device = ids.device if ids is not None else embeds.device
        cache = kwargs.get("cache", kwargs.get("past_key_values"))
        if cache is not None and _cache_length(cache) > 0:
            self.masks = None  # continuing a cache: generated/scored tokens, not the prompt
            return None
        mask = kwargs.get("attention_mask")
        prompt = torch.ones(shape, dtype=torch.bool, device=device)
        if mask is not None:
            prompt &= mask[:, -shape[1] :].bool()
        labels = kwargs.get("labels")
        if labels is not None:
            prompt &= labels == -100
        rank = prompt.long().cumsum(dim=1)  # (batch, seq): 1-based rank among prompt tokens
        length = rank[:, -1:]  # (batch, 1): prompt tokens per row
        first = prompt & (rank <= self.first)
        last = prompt & (rank > length - self.last)
        self.masks = (first, last)
        return None


def _cache_length(cache) -> int:
    length = getattr(cache, "get_seq_length", None)
    return int(length()) if length is not None else 0


class LoReFTEdit(HookedEdit):
    method = "loreft"

    def __init__(
        self,
        sites: list[LayerSite],
        config: Any,
        model_type: str,
        first: int,
        last: int,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__(config, model_type)
        self._sites = list(sites)
        self.layers = [s.layer for s in sites]
        self.first, self.last = first, last
        self.hidden = sites[0].hidden_size
        self.rank = int(config.rank)
        self.parts = self.parts_of(config.share_weights, first, last)
        self.interventions = nn.ModuleDict(
            {
                f"{layer}_{part}": LowRankIntervention(
                    self.hidden, self.rank, float(config.dropout), generator
                )
                for layer in self.layers
                for part in self.parts
            }
        )
        self.positions = PromptPositions(first, last)

    @staticmethod
    def parts_of(share_weights: bool, first: int, last: int) -> tuple[str, ...]:
        """``("shared",)``, or ``("prefix", "suffix")`` (only the non-empty ones)."""
        if share_weights or first == 0 or last == 0:
            return ("shared",)
        return ("prefix", "suffix")

    @staticmethod
    def count(sites: list[LayerSite], rank: int, parts: int) -> int:
        """``parts * (2 * hidden * rank + rank)`` per edited layer."""
        return sum(parts * LowRankIntervention.count(s.hidden_size, rank) for s in sites)

    def geometry(self) -> dict[str, Any]:
        return {"layers": self.layers, "hidden_size": self.hidden}

    def _hook(self, model: nn.Module) -> list:
        handles = [self.positions.hook(model)]
        for site in self._sites:
            handles.append(
                site.module.register_forward_hook(partial(self._forward_hook, site.layer))
            )
        return handles

    def _forward_hook(self, layer: int, module, args, output):
        masks = self.positions.masks
        if not self._enabled or masks is None:
            return None
        first, last = masks  # (batch, seq) each
        h = output_tensor(output)  # (batch, seq, hidden)
        x = h.float()
        if self.parts == ("shared",):
            x = torch.where((first | last)[..., None], self.interventions[f"{layer}_shared"](x), x)
        else:
            x = torch.where(first[..., None], self.interventions[f"{layer}_prefix"](x), x)
            x = torch.where(last[..., None], self.interventions[f"{layer}_suffix"](x), x)
        return replace_output(output, x.to(h.dtype))


def apply_loreft(
    model: nn.Module, config: Any, first: int, last: int, generator: torch.Generator | None = None
) -> LoReFTEdit:
    """Freeze ``model`` and attach LoReFT on the residual output of ``config.layers``."""
    sites = find_residual_sites(model, config.layers)
    return LoReFTEdit(sites, config, model_type_of(model), first, last, generator).attach(model)


def count_loreft(model: nn.Module, config: Any, first: int, last: int) -> int:
    parts = len(LoReFTEdit.parts_of(config.share_weights, first, last))
    return LoReFTEdit.count(find_residual_sites(model, config.layers), int(config.rank), parts)
