"""LoFiT: stage 1 scales every head, ``(1 + A) * z``, under an L1 penalty; the heads with the
largest ``||A||_2`` are kept; stage 2 (a fresh run) adds a bias ``z + v`` on those heads only.

Stage 1 stores ``A`` as ``[L, H, d]``. Stage 2 stores ``v`` as ``[K, d]`` with the flat index
``layer * H + head`` of each row; the hook scatters the rows into a zero ``[L * H, d]`` bias and
takes its layer's ``[H, d]`` slice, so no Python loop runs over heads.
"""

from __future__ import annotations

import torch
from torch import nn

from jola_ray.editing.base import HeadEdit
from jola_ray.editing.configs import LoFiTConfig, default_top_k
from jola_ray.editing.sites import HeadGeometry, HeadSite
from jola_ray.errors import ConfigError


class LoFiTEdit(HeadEdit):
    method = "lofit"

    def __init__(
        self,
        sites: list[HeadSite],
        geometry: HeadGeometry,
        config: LoFiTConfig,
        generator: torch.Generator,
    ) -> None:
        super().__init__(sites, geometry, config)
        n_layers, n_heads, d = geometry.num_layers, geometry.num_heads, geometry.head_dim
        self.scale_vector = None
        self.bias_vector = None
        if config.stage == "scale":
            self.scale_vector = nn.Parameter(
                torch.randn(n_layers, n_heads, d, generator=generator) * config.init_std
            )
        else:
            if not config.heads:
                raise ConfigError("heads: stage 'bias' needs the (layer, head) pairs of stage 1")
            bad = [(la, h) for la, h in config.heads if la >= n_layers or h >= n_heads]
            if bad:
                raise ConfigError(
                    f"heads: {bad} out of range; the model has {n_layers} layers x {n_heads} heads"
                )
            flat = [layer * n_heads + head for layer, head in config.heads]
            self.register_buffer("flat_index", torch.tensor(flat, dtype=torch.long))
            self.bias_vector = nn.Parameter(
                torch.randn(len(flat), d, generator=generator) * config.init_std
            )
            # Per edited layer: which rows of bias_vector are its heads, and which heads they are
            # (derived from `heads`, so not saved with the edit).
            for layer in {la for la, _ in config.heads}:
                rows = [i for i, (la, _) in enumerate(config.heads) if la == layer]
                heads = [config.heads[i][1] for i in rows]
                self.register_buffer(f"_rows_{layer}", torch.tensor(rows), persistent=False)
                self.register_buffer(f"_heads_{layer}", torch.tensor(heads), persistent=False)

    @staticmethod
    def count(geometry: HeadGeometry, config: LoFiTConfig) -> int:
        """Stage 1: ``L * H * d``; stage 2: ``K * d`` (K = len(heads), else top_k or 10%)."""
        if config.stage == "scale":
            return geometry.total_heads * geometry.head_dim
        k = len(config.heads) if config.heads else config.top_k
        k = k or default_top_k(geometry.num_layers, geometry.num_heads)
        return k * geometry.head_dim

    @property
    def stage(self) -> str:
        return self.config.stage

    def top_k(self) -> int:
        return self.config.top_k or default_top_k(self.geometry.num_layers, self.geometry.num_heads)

    def edited_layers(self) -> list[int]:
        if self.stage == "scale":
            return list(range(self.geometry.num_layers))
        return sorted({layer for layer, _ in self.config.heads})

    def layer_factors(self, layer: int, batch: int):
        """Stage 1: ``(1 + A[layer], None)``; stage 2: ``(None, v)`` scattered to ``[H, d]``."""
        if self.stage == "scale":
            return 1 + self.scale_vector[layer], None  # [H, d]
        g = self.geometry
        bias = self.bias_vector.new_zeros(g.num_heads, g.head_dim)  # [H, d], zero off the top K
        if hasattr(self, f"_rows_{layer}"):
            rows, heads = getattr(self, f"_rows_{layer}"), getattr(self, f"_heads_{layer}")
            bias = bias.index_copy(0, heads, self.bias_vector.index_select(0, rows))
        return None, bias

    def penalty(self, lambda_t: float | None = None) -> torch.Tensor:
        """Stage 1: ``l1_lambda * sum |A|`` (a sum over every element); stage 2: zero."""
        if self.stage == "scale":
            return self.config.l1_lambda * self.scale_vector.abs().sum()
        return self.bias_vector.new_zeros(())

    def head_norms(self) -> torch.Tensor:
        """``||A||_2`` (stage 1) or ``||v||_2`` (stage 2) per head, ``[L, H]``."""
        g = self.geometry
        if self.stage == "scale":
            return self.scale_vector.detach().float().norm(dim=-1).cpu()
        norms = torch.zeros(g.total_heads)
        norms[self.flat_index.cpu()] = self.bias_vector.detach().float().norm(dim=-1).cpu()
        return norms.view(g.num_layers, g.num_heads)

    def open_gate_fraction(self) -> float:
        """Share of heads the edit changes: 1 in stage 1, K / (L * H) in stage 2."""
        if self.stage == "scale":
            return 1.0
        return len(self.config.heads) / self.geometry.total_heads

    def head_table(self) -> dict[str, list]:
        g = self.geometry
        norms = self.head_norms()
        if self.stage == "scale":
            chosen = set(select_top_heads(self, self.top_k()))
        else:
            chosen = set(self.config.heads)
        table: dict[str, list] = {
            k: []
            for k in ("method", "layer", "head", "gate_add", "gate_mul", "norm_add", "norm_mul")
        }
        table["selected"] = []
        for layer in range(g.num_layers):
            for head in range(g.num_heads):
                picked = (layer, head) in chosen
                add_on = self.stage == "bias" and picked
                table["method"].append(self.method)
                table["layer"].append(layer)
                table["head"].append(head)
                table["gate_add"].append(1.0 if add_on else 0.0)
                table["gate_mul"].append(1.0 if self.stage == "scale" else 0.0)
                table["norm_add"].append(float(norms[layer, head]) if self.stage == "bias" else 0.0)
                table["norm_mul"].append(
                    float(norms[layer, head]) if self.stage == "scale" else 0.0
                )
                table["selected"].append(picked)
        return table


def select_top_heads(edit: LoFiTEdit, k: int | None = None) -> list[tuple[int, int]]:
    """The ``k`` heads with the largest ``||A||_2`` of a stage-1 edit, best first.

    ``k`` defaults to the config's ``top_k`` or 10% of all heads; ties break by (layer, head).
    """
    if not isinstance(edit, LoFiTEdit) or edit.stage != "scale":
        raise ConfigError("select_top_heads needs a LoFiT stage-1 ('scale') edit")
    k = edit.top_k() if k is None else k
    g = edit.geometry
    if not 0 < k <= g.total_heads:
        raise ConfigError(f"top_k: expected 1..{g.total_heads} (all heads), got {k}")
    norms = edit.head_norms().flatten()  # [L*H], flat index = layer * H + head
    order = torch.sort(-norms, stable=True).indices[:k].tolist()  # stable: ties keep index order
    return [(i // g.num_heads, i % g.num_heads) for i in order]
