"""RED (Wu et al. 2024, "Advancing Parameter Efficiency in Fine-tuning via Representation
Editing"): per edited layer a scaling vector ``s`` (init ones) and a bias vector ``b`` (init
zeros), both ``hidden_size`` wide, applied to the FFN block's output, ``h' = s * h + b``, at
every token. At initialisation the model is unchanged.

The vectors are stacked ``[layers, hidden]`` in fp32; the hook computes in fp32 and casts back
to the model's dtype (exact at init: ``1 * h + 0 == h``).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from jola_ray.editing.hooked import LayerOutputEdit
from jola_ray.editing.sites import LayerSite, find_ffn_sites, model_type_of


class REDEdit(LayerOutputEdit):
    method = "red"

    def __init__(self, sites: list[LayerSite], config: Any, model_type: str) -> None:
        super().__init__(config, model_type)
        self._sites = list(sites)
        self.layers = [s.layer for s in sites]
        hidden = sites[0].hidden_size
        self.scale = nn.Parameter(torch.ones(len(sites), hidden))  # (edited layers, hidden)
        self.bias = nn.Parameter(torch.zeros(len(sites), hidden))  # (edited layers, hidden)

    @staticmethod
    def count(sites: list[LayerSite]) -> int:
        """``2 * hidden_size`` per edited layer."""
        return sum(2 * s.hidden_size for s in sites)

    def geometry(self) -> dict[str, Any]:
        return {"layers": self.layers, "hidden_size": int(self.scale.shape[1])}

    def edit_hidden(self, row: int, h: torch.Tensor) -> torch.Tensor:
        # h: (batch, seq, hidden); scale[row], bias[row]: (hidden,)
        return (h.float() * self.scale[row] + self.bias[row]).to(h.dtype)

    def inspect(self):
        """One row per edited layer: the norms of ``s - 1`` and ``b``."""
        import pandas as pd

        with torch.no_grad():
            return pd.DataFrame(
                {
                    "layer": self.layers,
                    "norm_scale_delta": (self.scale - 1).norm(dim=1).tolist(),
                    "norm_bias": self.bias.norm(dim=1).tolist(),
                }
            )


def apply_red(model: nn.Module, config: Any) -> REDEdit:
    """Freeze ``model`` and attach RED on the FFN output of ``config.layers`` (None: all)."""
    sites = find_ffn_sites(model, config.layers)
    return REDEdit(sites, config, model_type_of(model)).attach(model)


def count_red(model: nn.Module, config: Any) -> int:
    return REDEdit.count(find_ffn_sites(model, config.layers))
