"""A trial pack's edit: K configurations' head edits over one frozen model, one forward for all.

The K member edits are ordinary ``HeadEdit`` modules (their own parameters, config, noise
generator, save/load and ``inspect``). ``PackedHeadEdit`` registers as ``model.head_edit``
(so the members' parameters are the model's only trainables) and hooks every ``o_proj`` that a
member edits. The batch it sees is the *live* members' batches stacked along the batch
dimension, ``K' x B`` rows, member ``live[i]``'s rows at ``[i*B, (i+1)*B)``; at each layer the
hook stacks the live members' factors into a leading configuration dimension
(``[K', H, d]``, or ``[K', B, H, d]`` for per-example gates) and edits each slice with its own
member's factors in one fused op. A member that stops training leaves ``live``; the next
forward is ``K'-1`` slices wide.

Each slice's arithmetic is elementwise and the same as a lone edit's, so a packed member's
forward equals its own forward alone (up to the frozen model's matmuls at a different batch).
``solo(k)`` swaps the pack for member ``k`` attached alone (its evaluation, test and saving run
exactly the single-configuration path).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from functools import partial

import torch
from torch import nn

from jola_ray.editing.base import HeadEdit, _device_of
from jola_ray.editing.slot import EditSlot
from jola_ray.errors import ConfigError, JolaRayError


class PackedHeadEdit(EditSlot):
    """K head edits of one method trained together; see the module docstring."""

    def __init__(self, members: Sequence[HeadEdit]) -> None:
        super().__init__()
        if not members:
            raise ConfigError("a trial pack needs at least one configuration")
        methods = {m.method for m in members}
        geometries = {m.geometry for m in members}
        if len(methods) != 1 or len(geometries) != 1:
            raise ConfigError(
                f"a trial pack holds one method on one model; got methods {sorted(methods)}"
            )
        if type(members[0]).layer_factors is HeadEdit.layer_factors:
            raise ConfigError(f"method {members[0].method!r} does not pack (no layer_factors)")
        self.members = nn.ModuleList(members)
        self.method = members[0].method
        self.geometry = members[0].geometry
        self._sites = list(members[0]._sites)
        self.live: list[int] = list(range(len(members)))

    def __len__(self) -> int:
        return len(self.members)

    def set_live(self, live: Sequence[int]) -> None:
        """The members in the stack, in row order (their batches' order in the forward)."""
        bad = [k for k in live if not 0 <= k < len(self.members)]
        if bad or len(set(live)) != len(live):
            raise JolaRayError(f"pack live set {list(live)}: indices must be distinct, 0..K-1")
        self.live = list(live)

    def member_parameters(self, k: int) -> list[nn.Parameter]:
        return list(self.members[k].parameters())

    # --- attach / detach --------------------------------------------------------------------
    def attach(self, model: nn.Module) -> None:
        self._occupy(model, _device_of(self._sites[0].o_proj), "a pack")
        layers = sorted({layer for m in self.members for layer in m.edited_layers()})
        by_layer = {site.layer: site for site in self._sites}
        for layer in layers:
            site = by_layer[layer]
            hook = partial(self._pre_hook, layer, site.num_heads, site.head_dim)
            self._handles.append(site.o_proj.register_forward_pre_hook(hook, with_kwargs=True))

    @contextlib.contextmanager
    def solo(self, k: int) -> Iterator[HeadEdit]:
        """Member ``k`` attached alone (as ``model.head_edit``, its own hooks) inside the block;
        the pack is back on exit. Evaluation and saving then run the single-configuration code."""
        model = self._model_ref() if self._model_ref is not None else None
        if model is None:
            raise JolaRayError("the pack is not attached to a model")
        training = model.training
        self.remove()
        member = self.members[k]
        member.attach(model)
        try:
            yield member
        finally:
            member.remove()
            self.attach(model)
            model.train(training)

    # --- the packed forward -----------------------------------------------------------------
    def _pre_hook(self, layer: int, num_heads: int, head_dim: int, module, args, kwargs):
        x = args[0] if args else kwargs["input"]
        out = self.edit_stacked(layer, x.unflatten(-1, (num_heads, head_dim)))  # (K'B, t, H, d)
        out = out.flatten(-2)  # (K'B, t, H, d) -> (K'B, t, H*d)
        if args:
            return (out, *args[1:]), kwargs
        return args, {**kwargs, "input": out}

    def edit_stacked(self, layer: int, z: torch.Tensor) -> torch.Tensor:
        """Edit ``z`` (K'B, t, H, d), slice ``i`` by member ``live[i]``; same shape back."""
        n = len(self.live)
        if z.shape[0] % n:
            raise JolaRayError(
                f"packed forward: {z.shape[0]} rows do not split into {n} live configurations"
            )
        batch = z.shape[0] // n
        scales, biases = [], []
        for k in self.live:
            member = self.members[k]
            if layer in member.edited_layers():
                scale, bias = member.layer_factors(layer, batch)
            else:
                scale = bias = None
            scales.append(scale)
            biases.append(bias)
        scale = _stack(scales, 1.0, batch, z)  # [K', 1 or B, 1, H, d] or None
        bias = _stack(biases, 0.0, batch, z)
        zk = z.unflatten(0, (n, batch))  # (K'B, t, H, d) -> (K', B, t, H, d)
        if scale is None and bias is None:
            out = zk
        elif scale is None:
            out = zk + bias
        elif bias is None:
            out = zk * scale
        else:
            out = torch.addcmul(bias, zk, scale)
        return out.flatten(0, 1)  # (K', B, t, H, d) -> (K'B, t, H, d)

    def penalties(self, lambdas: dict[int, float | None] | None = None) -> dict[int, torch.Tensor]:
        """Each live member's own penalty (``lambdas``: member -> lambda_t for reference form)."""
        lambdas = lambdas or {}
        out = {}
        for k in self.live:
            lam = lambdas.get(k)
            member = self.members[k]
            out[k] = member.penalty(lam) if lam is not None else member.penalty()
        return out


def _stack(factors: list, fill: float, batch: int, z: torch.Tensor) -> torch.Tensor | None:
    """Live members' factors -> ``[K', 1|B, 1, H, d]`` in z's dtype; None if no member has one.

    A member without the term gets the identity (ones for a scale, zeros for a bias): ``z * 1``
    and ``z + 0`` are exact, so mixing does not change any slice.
    """
    if all(f is None for f in factors):
        return None
    per_example = any(f is not None and f.dim() == 3 for f in factors)
    shape = (batch, *z.shape[-2:]) if per_example else tuple(z.shape[-2:])  # [(B,) H, d]
    full = []
    for f in factors:
        if f is None:
            f = z.new_full(shape, fill)
        f = f.to(device=z.device, dtype=z.dtype)
        if per_example and f.dim() == 2:
            f = f.expand(batch, *f.shape)  # [H, d] -> [B, H, d]
        full.append(f)
    stacked = torch.stack(full)  # [K', (B,) H, d]
    if per_example:
        return stacked.unsqueeze(2)  # [K', B, H, d] -> [K', B, 1, H, d]: over the sequence
    return stacked[:, None, None]  # [K', H, d] -> [K', 1, 1, H, d]: over batch and sequence


def build_pack(model: nn.Module, configs: Sequence, generators: Sequence | None = None):
    """Build one member edit per config (init from each config's seed, as ``apply_edit``), wrap
    them in a ``PackedHeadEdit`` and attach it to ``model`` (frozen)."""
    from jola_ray.editing.edit import EDIT_CLASSES, _generator
    from jola_ray.editing.sites import find_head_sites, geometry_of

    sites = find_head_sites(model)
    geometry = geometry_of(model, sites)
    members = []
    for i, config in enumerate(configs):
        edit_cls = EDIT_CLASSES.get(type(config))
        if edit_cls is None:
            raise ConfigError(f"unknown edit config {type(config).__name__}")
        if getattr(config, "site", "heads") != "heads":  # JoLA's component study
            raise ConfigError(
                f"a trial pack edits heads only; JoLA at site {config.site!r} runs unpacked"
            )
        gen = generators[i] if generators is not None else None
        members.append(edit_cls(sites, geometry, config, _generator(gen, config.seed)))
    pack = PackedHeadEdit(members)
    pack.attach(model)
    return pack
