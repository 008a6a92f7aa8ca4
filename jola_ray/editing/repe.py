"""RepE (Zou et al. 2023, "Representation Engineering"), the JoLA paper's inference-time
baseline: reading vectors per layer from contrast pairs, added to the residual stream.

Building (no training): for each contrast pair (the same prompt continued with a correct and with
an incorrect answer) the residual stream after each chosen layer is read at the last token;
``D`` (pairs x hidden) holds the differences correct - incorrect. The reading vector ``u`` is the
first principal component of ``D`` (centred), RepE's PCA reader, signed so that the mean
difference projects positively on it; its magnitude ``m = mean(D) . u`` is the average contrast
along ``u``. At inference every token's residual stream after the layer moves by
``coefficient * m * u`` (RepE's activation addition, in units of the contrast itself, so one
coefficient grid suits every model's hidden-state scale). How the pairs are built from a task's
training split is the method's (``jola_ray.methods.repe``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from jola_ray.editing.activations import last_token_activations
from jola_ray.editing.hooked import LayerOutputEdit
from jola_ray.editing.sites import LayerSite, find_residual_sites, model_type_of
from jola_ray.errors import ConfigError


def reading_vectors(diffs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(u, m)`` from differences ``(pairs, hidden)``: the unit first principal component of
    the centred differences, signed along their mean, and the mean's projection on it."""
    mean = diffs.mean(dim=0)  # (hidden,)
    centred = diffs - mean
    if diffs.shape[0] > 1 and bool(centred.abs().max() > 0):
        _, _, vh = torch.linalg.svd(centred, full_matrices=False)  # vh: (k, hidden)
        u = vh[0]
    else:  # one pair (or identical differences): the mean difference is the only direction
        u = mean / mean.norm().clamp_min(1e-12)
    if float(mean @ u) < 0:
        u = -u
    return u, mean @ u


class RepEEdit(LayerOutputEdit):
    method = "repe"

    def __init__(self, sites: list[LayerSite], config: Any, model_type: str) -> None:
        super().__init__(config, model_type)
        self._sites = list(sites)
        self.layers = [s.layer for s in sites]
        hidden = sites[0].hidden_size
        # Built from data, not trained: buffers (saved with the edit, never optimised).
        self.register_buffer("direction", torch.zeros(len(sites), hidden))  # (layers, hidden)
        self.register_buffer("magnitude", torch.zeros(len(sites)))  # (layers,)
        self.pair_counts: dict[str, int] = {}  # set by the method: pairs used and skipped

    def geometry(self) -> dict[str, Any]:
        return {"layers": self.layers, "hidden_size": int(self.direction.shape[1])}

    def shift(self) -> torch.Tensor:
        """``(layers, hidden)``: what each edited layer adds to every token's residual stream."""
        return float(self.config.coefficient) * self.magnitude[:, None] * self.direction

    @torch.no_grad()
    def build(self, model: nn.Module, tokenizer, pairs: Sequence[tuple[str, str, str]]) -> None:
        """Fill the reading vectors from ``(prompt, correct, incorrect)`` triples (the model must
        not carry an edit: its own activations are read)."""
        if not pairs:
            raise ConfigError("repe: no contrast pairs to build reading vectors from")
        modules = [s.module for s in self._sites]
        pos = last_token_activations(model, tokenizer, [(p, c) for p, c, _ in pairs], modules)
        neg = last_token_activations(model, tokenizer, [(p, n) for p, _, n in pairs], modules)
        for row, (a, b) in enumerate(zip(pos, neg, strict=True)):
            u, m = reading_vectors(a - b)  # (pairs, hidden) differences per layer
            self.direction[row] = u.to(self.direction.device)
            self.magnitude[row] = m.to(self.magnitude.device)

    def edit_hidden(self, row: int, h: torch.Tensor) -> torch.Tensor:
        # h: (batch, seq, hidden); the shift: (hidden,), added to every token
        shift = float(self.config.coefficient) * self.magnitude[row] * self.direction[row]
        return (h.float() + shift).to(h.dtype)

    def summary(self) -> dict[str, Any]:
        return dict(self.pair_counts)

    def inspect(self):
        import pandas as pd

        return pd.DataFrame(
            {
                "layer": self.layers,
                "magnitude": self.magnitude.tolist(),
                "shift_norm": self.shift().norm(dim=1).tolist(),
            }
        )


def resolve_layers(model: nn.Module, layers) -> list[int] | None:
    """RepE's layers may count from the end (``-1`` is the last layer, as RepE writes them)."""
    if layers is None:
        return None
    from jola_ray.editing.sites import decoder_layers

    n = len(decoder_layers(model)[1])
    return [i + n if i < 0 else i for i in layers]


def build_repe(model: nn.Module, tokenizer, config: Any, pairs) -> RepEEdit:
    """Read the vectors from ``pairs`` on the untouched model, then freeze it and attach."""
    sites = find_residual_sites(model, resolve_layers(model, config.layers))
    edit = RepEEdit(sites, config, model_type_of(model))
    edit.to(model.get_input_embeddings().weight.device)
    edit.build(model, tokenizer, pairs)
    return edit.attach(model)
