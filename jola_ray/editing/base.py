"""The plumbing every head edit shares: attach to a model, hook ``o_proj``, detach exactly.

A ``HeadEdit`` is an ``nn.Module`` holding a method's parameters (fp32, stacked per layer so
the hook is one fused elementwise op). ``attach`` freezes the whole base model (``lm_head``
included), registers the edit as ``model.head_edit`` (so a HF/TRL Trainer finds and optimises
its parameters, and ``model.train()``/``model.eval()`` switch its gates) and puts one forward
pre-hook on each edited layer's output projection. The hook views the projection's input
``(batch, seq, H * d)`` as ``(batch, seq, H, d)``, lets the method edit it, and hands the
flattened result to ``o_proj``. ``remove`` undoes all of it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from functools import partial
from typing import ClassVar

import torch
from torch import nn

from jola_ray.editing.sites import HeadGeometry, HeadSite
from jola_ray.editing.slot import SwitchableEdit


class HeadEdit(SwitchableEdit):
    """Base class of the head-edit methods; subclasses define the parameters and the edit."""

    method: ClassVar[str] = ""

    def __init__(self, sites: list[HeadSite], geometry: HeadGeometry, config) -> None:
        super().__init__()
        self.config = config
        self.geometry = geometry
        self._sites = list(sites)
        self._recorded: list | None = None
        # Gate noise source at training: None is the device's global RNG; a trial pack sets one
        # generator per configuration (``jola_ray.editing.pack``).
        self.noise_generator: torch.Generator | None = None

    # --- what a method implements -------------------------------------------------------
    def edited_layers(self) -> list[int]:
        """Model layer indices this edit hooks."""
        raise NotImplementedError

    def layer_factors(
        self, layer: int, batch: int
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """``(scale, bias)`` of ``layer`` with ``z' = z * scale + bias`` over every head: each
        ``[H, d]`` (or ``[batch, H, d]`` when sampled per example) in fp32, None where the
        method has no such term. Methods that define it can be trained in a trial pack
        (``jola_ray.editing.pack``), which stacks the factors of K configurations."""
        raise NotImplementedError

    def edit_heads(self, layer: int, z: torch.Tensor) -> torch.Tensor:
        """Edit ``z`` of shape ``(batch, seq, H, d)`` at ``layer``; same shape and dtype back."""
        scale, bias = self.layer_factors(layer, z.shape[0])
        return apply_factors(z, scale, bias)

    def penalty(self) -> torch.Tensor:
        """The method's regulariser, already weighted, to add to the task loss."""
        raise NotImplementedError

    def head_table(self) -> dict[str, list]:
        """Columns of ``inspect()``: one entry per (layer, head)."""
        raise NotImplementedError

    def open_gate_fraction(self) -> float:
        raise NotImplementedError

    def gate_statistics(self) -> dict[str, float]:
        """Per-epoch gate statistics to report (``open_gate_fraction_<part>[_l<layer>]``);
        none for a method without gates."""
        return {}

    # --- shared behaviour ---------------------------------------------------------------
    def inspect(self):
        """One row per (layer, head): gate_add, gate_mul, norm_add, norm_mul, selected, ..."""
        import pandas as pd

        with torch.no_grad():
            return pd.DataFrame(self.head_table())

    def attach(self, model: nn.Module) -> None:
        self._occupy(model, _device_of(self._sites[0].o_proj), "another")
        by_layer = {site.layer: site for site in self._sites}
        for layer in self.edited_layers():
            site = by_layer[layer]
            hook = partial(self._pre_hook, layer, site.num_heads, site.head_dim)
            self._handles.append(site.o_proj.register_forward_pre_hook(hook, with_kwargs=True))

    def _pre_hook(self, layer: int, num_heads: int, head_dim: int, module, args, kwargs):
        if not self._enabled:
            return None
        x = args[0] if args else kwargs["input"]
        z = x.unflatten(-1, (num_heads, head_dim))  # (b, t, H*d) -> (b, t, H, d)
        out = self.edit_heads(layer, z).flatten(-2)  # (b, t, H, d) -> (b, t, H*d)
        if args:
            return (out, *args[1:]), kwargs
        return args, {**kwargs, "input": out}

    @contextlib.contextmanager
    def record_gates(self) -> Iterator[list]:
        """Collect ``(layer, gates dict)`` for every hooked call inside the block (debugging
        and tests: the sampled training gates are otherwise not kept)."""
        previous, self._recorded = self._recorded, []
        try:
            yield self._recorded
        finally:
            self._recorded = previous

    def _record(self, layer: int, gates: dict[str, torch.Tensor]) -> None:
        if self._recorded is not None:
            self._recorded.append((layer, {k: v.detach().clone() for k, v in gates.items()}))

    def extra_repr(self) -> str:
        g = self.geometry
        return f"method={self.method}, layers={g.num_layers}, heads={g.num_heads}, head_dim={g.head_dim}"


def apply_factors(
    z: torch.Tensor, scale: torch.Tensor | None, bias: torch.Tensor | None
) -> torch.Tensor:
    """``z * scale + bias`` with ``z`` (b, t, H, d) and factors ``[H, d]`` or ``[b, H, d]``.

    fp32 factors, activation-dtype arithmetic: one fused op over all heads and tokens.
    """
    if scale is not None and scale.dim() == 3:  # [b, H, d] -> [b, 1, H, d]: over the sequence
        scale = scale.unsqueeze(1)
    if bias is not None and bias.dim() == 3:
        bias = bias.unsqueeze(1)
    if scale is None and bias is None:
        return z
    if scale is None:
        return z + _like(bias, z)
    if bias is None:
        return z * _like(scale, z)
    return torch.addcmul(_like(bias, z), z, _like(scale, z))


def _like(tensor: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    return tensor.to(device=z.device, dtype=z.dtype)


def _device_of(module: nn.Module) -> torch.device | None:
    for tensor in module.parameters():
        return tensor.device
    return None
