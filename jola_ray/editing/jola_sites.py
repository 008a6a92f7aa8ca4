"""JoLA's gated edit at other sites than the heads: the paper's component study.

``jola.site`` names one site or a ``+``-joined combination (``heads+ffn``):

- ``heads``: the per-head edit before ``o_proj`` (``jola.JoLAEdit``, the paper's JoLA);
- ``ffn``: each edited layer's feed-forward block output ``h`` (batch, seq, hidden), before the
  residual add: ``h' = (1 + g_m * m) * h + g_a * a`` with ``m, a`` of hidden size and one gate
  per part per layer;
- ``residual``: each edited decoder layer's output (the residual stream, "hidden states"), the
  same form;
- ``bias``: a gated bias on every linear projection of each edited layer (attention and MLP),
  ``y' = y + g * b``, one gate per projection; bias terms are additive, so this site has no
  multiplicative part.

``jola.parts`` and ``jola.gates`` apply to every site; ``jola.layers`` chooses the layers of all
sites and ``jola.heads`` the heads of the head site. Gates are Hard-Concrete as for the heads,
sampled once per forward (``per_example_gates`` applies to the head site only). The penalty is
the sum over the sites: the head site's own (``JoLAEdit.penalty``), and for each other site the
same two forms over its gates, ``gate_lambda: auto`` resolving to ``0.1 / (L * U**2)`` with U
gates per layer and part (1 for ``ffn``/``residual``, the projections per layer for ``bias``).

The sites are found by ``editing.sites`` (``find_ffn_sites``, ``find_residual_sites``,
``find_linear_sites``: the same decoder layers as the head sites, any architecture).
"""

from __future__ import annotations

import math
from functools import partial

import torch
from torch import nn

from jola_ray.editing import gates
from jola_ray.editing.base import HeadEdit
from jola_ray.editing.configs import JoLAConfig
from jola_ray.editing.jola import REFERENCE_LAMBDA_0, JoLAEdit
from jola_ray.editing.sites import (
    HeadGeometry,
    HeadSite,
    find_ffn_sites,
    find_linear_sites,
    find_residual_sites,
    hidden_size_of,
)
from jola_ray.errors import ConfigError

SITES = ("heads", "ffn", "residual", "bias")


def site_names(site: str) -> list[str]:
    """``"heads+ffn"`` -> ``["heads", "ffn"]`` (validated by ``JoLAConfig``)."""
    return str(site).split("+")


def _site_shapes(model: nn.Module, site: str, layers: list[int]) -> tuple[int, list[int]]:
    """(gates per layer U, widths of the units of a layer): ffn/residual one unit of hidden
    size; bias one unit per linear projection (its out_features)."""
    if site in ("ffn", "residual"):
        return 1, [hidden_size_of(model)]
    widths = [s.out_features for s in find_linear_sites(model, layers=[layers[0]])]
    return len(widths), widths


def _targets(model: nn.Module, site: str, layers: list[int]) -> list[tuple[int, int, nn.Module]]:
    """(layer, unit, module) to hook: the sites of ``editing.sites``, units in module order."""
    if site == "ffn":
        return [(s.layer, 0, s.module) for s in find_ffn_sites(model, layers)]
    if site == "residual":
        return [(s.layer, 0, s.module) for s in find_residual_sites(model, layers)]
    units: dict[int, int] = {}
    out = []
    for s in find_linear_sites(model, layers=layers):
        out.append((s.layer, units.get(s.layer, 0), s.module))
        units[s.layer] = units.get(s.layer, 0) + 1
    return out


def _parts_of(site: str, config: JoLAConfig) -> list[str]:
    parts = [p for p, on in (("add", config.has_add), ("mul", config.has_mul)) if on]
    return ["add"] if site == "bias" else parts


def _gate_names(parts: list[str], mode: str) -> list[str]:
    return {"two": parts, "shared": ["shared"], "none": []}[mode]


def check_sites(config: JoLAConfig) -> None:
    """Combinations the sites cannot take, named (bias has no multiplicative part)."""
    if "bias" in site_names(config.site) and config.parts == "mul":
        raise ConfigError(
            f"jola.site {config.site!r} with jola.parts 'mul': the bias site is additive only"
        )


class _SiteGroup(nn.Module):
    """The gated vectors of one non-head site over the edited layers.

    Vectors ``[L_e, W]`` per part (W: the layer's units' widths concatenated), log alphas
    ``[L_e, U]`` per gate (one per part, one shared, or none).
    """

    def __init__(self, site: str, widths: list[int], parts: list[str], mode: str) -> None:
        super().__init__()
        self.site, self.parts, self.mode = site, list(parts), mode
        self.offsets = [sum(widths[:i]) for i in range(len(widths))]
        self.widths = list(widths)
        self.n_units = len(widths)

    def build(self, n_layers: int, init_std: float, generator) -> None:
        total = sum(self.widths)
        bound = math.sqrt(6.0 / (self.n_units + 1))  # Xavier-uniform on a [U, 1] tensor
        for part in self.parts:
            vec = torch.randn(n_layers, total, generator=generator) * init_std
            self.register_parameter(f"{part}_vector", nn.Parameter(vec))
        for name in _gate_names(self.parts, self.mode):
            u = torch.rand(n_layers, self.n_units, generator=generator)
            self.register_parameter(f"{name}_log_alpha", nn.Parameter((2 * u - 1) * bound))

    def log_alphas(self) -> dict[str, torch.Tensor]:
        return {n: getattr(self, f"{n}_log_alpha") for n in _gate_names(self.parts, self.mode)}

    def gates_for(self, slot: int, unit: int, training: bool, temperature: float):
        """Per part the gate of one unit at one layer (a 0-d tensor), or None without gates."""
        out = {}
        for name, la in self.log_alphas().items():
            x = la[slot, unit]
            out[name] = (
                gates.sample_gates(x, None, temperature) if training else gates.eval_gates(x)
            )
        if "shared" in out:
            return {p: out["shared"] for p in self.parts}
        return out

    def apply(self, slot: int, unit: int, h: torch.Tensor, g: dict) -> torch.Tensor:
        """``(1 + g_m m) * h + g_a a`` on one unit's output ``h`` (..., width)."""
        cols = slice(self.offsets[unit], self.offsets[unit] + self.widths[unit])
        out = h
        if "mul" in self.parts:
            m = self.mul_vector[slot, cols]
            m = g["mul"] * m if "mul" in g else m
            out = out * (1 + m).to(h.dtype)
        if "add" in self.parts:
            a = self.add_vector[slot, cols]
            a = g["add"] * a if "add" in g else a
            out = out + a.to(h.dtype)
        return out

    def eval_values(self, n_layers: int) -> dict[str, torch.Tensor]:
        """Eval gates per part ``[L_e, U]`` (ones without gates: always on)."""
        values = {n: gates.eval_gates(la) for n, la in self.log_alphas().items()}
        if not values:
            ref = next(iter(self.parameters()))
            return {p: ref.new_ones(n_layers, self.n_units) for p in self.parts}
        if "shared" in values:
            return {p: values["shared"] for p in self.parts}
        return values


class JoLASiteEdit(HeadEdit):
    """JoLA at the sites of ``config.site`` (see the module docstring)."""

    method = "jola"

    def __init__(
        self,
        model: nn.Module,
        sites: list[HeadSite],
        geometry: HeadGeometry,
        config: JoLAConfig,
        generator: torch.Generator | None,
    ) -> None:
        super().__init__(sites, geometry, config)
        check_sites(config)
        names = site_names(config.site)
        self.layers = list(config.layers) if config.layers else list(range(geometry.num_layers))
        bad = [i for i in self.layers if i >= geometry.num_layers]
        if bad:
            raise ConfigError(f"layers: {bad} out of range; the model has {geometry.num_layers}")
        self._slot = {layer: i for i, layer in enumerate(self.layers)}
        # The head site is JoLA itself (drawn first from the generator); it is not attached on
        # its own: this edit's o_proj hooks call its edit_heads.
        self.heads = JoLAEdit(sites, geometry, config, generator) if "heads" in names else None
        self.groups = nn.ModuleDict()
        for site in (s for s in names if s != "heads"):
            n_units, widths = _site_shapes(model, site, self.layers)
            group = _SiteGroup(site, widths, _parts_of(site, config), config.gates)
            group.build(len(self.layers), config.init_std, generator)
            self.groups[site] = group

    @staticmethod
    def count(model: nn.Module, geometry: HeadGeometry, config: JoLAConfig) -> int:
        """Head site: ``JoLAEdit.count``; ffn/residual: ``L_e * (parts * hidden + gates)``;
        bias: ``L_e * (sum of out_features + projections)`` (no gates: without the gate term)."""
        check_sites(config)
        names = site_names(config.site)
        layers = list(config.layers) if config.layers else list(range(geometry.num_layers))
        total = JoLAEdit.count(geometry, config) if "heads" in names else 0
        for site in (s for s in names if s != "heads"):
            n_units, widths = _site_shapes(model, site, layers)
            parts = _parts_of(site, config)
            n_gates = len(_gate_names(parts, config.gates)) * n_units
            total += len(layers) * (len(parts) * sum(widths) + n_gates)
        return total

    # --- hooks ---------------------------------------------------------------------------
    def edited_layers(self) -> list[int]:
        """Layers whose o_proj is hooked (the head site's; none without it)."""
        return self.heads.edited_layers() if self.heads is not None else []

    def edit_heads(self, layer: int, z: torch.Tensor) -> torch.Tensor:
        return self.heads.edit_heads(layer, z)

    def attach(self, model: nn.Module) -> None:
        super().attach(model)  # freeze, model.head_edit, the head site's o_proj hooks
        for site, group in self.groups.items():
            for layer, unit, module in _targets(model, site, self.layers):
                hook = partial(self._post_hook, group, self._slot[layer], unit)
                self._handles.append(module.register_forward_hook(hook))

    def _post_hook(self, group: _SiteGroup, slot: int, unit: int, module, args, output):
        if not self._enabled:
            return None
        h = output[0] if isinstance(output, tuple) else output  # (b, t, width)
        g = group.gates_for(slot, unit, self.training, self.config.temperature)
        edited = group.apply(slot, unit, h, g)
        return (edited, *output[1:]) if isinstance(output, tuple) else edited

    # --- penalty and statistics ----------------------------------------------------------
    def penalty(self, lambda_t: float | None = None) -> torch.Tensor:
        """The head site's penalty plus each other site's (module docstring); 0 without gates."""
        total = self.heads.penalty(lambda_t) if self.heads is not None else None
        lam = REFERENCE_LAMBDA_0 if lambda_t is None else float(lambda_t)
        weights = {"add": lam, "mul": 1.0 - lam, "shared": 1.0}
        for group in self.groups.values():
            for name, la in group.log_alphas().items():
                p = gates.open_probability(la, self.config.temperature)  # [L_e, U]
                n_layers, n_units = p.shape
                if self.config.penalty == "paper":
                    weight = self.config.gate_lambda
                    if weight == "auto":
                        weight = REFERENCE_LAMBDA_0 / (n_layers * n_units**2)
                    term = float(weight) * p.sum()
                else:
                    term = weights[name] * p.mean(dim=1).sum() / (n_layers * n_units)
                total = term if total is None else total + term
        if total is None:
            return next(iter(self.parameters())).new_zeros(())
        return total

    def _eval_by_part(self) -> dict[str, torch.Tensor]:
        """Eval gates per part over every site, ``[L_e, units]`` (sites side by side)."""
        per_part: dict[str, list[torch.Tensor]] = {}
        if self.heads is not None:
            for part, v in self.heads.eval_gate_values().items():
                per_part.setdefault(part, []).append(v)
        for group in self.groups.values():
            for part, v in group.eval_values(len(self.layers)).items():
                per_part.setdefault(part, []).append(v)
        return {part: torch.cat(vs, dim=1) for part, vs in per_part.items()}

    def open_gate_fraction(self) -> float:
        """Share of open gates over every site's gates (1.0 without gates)."""
        values = []
        if self.heads is not None and self.heads._log_alphas():
            values += [gates.eval_gates(la).flatten() for la in self.heads._log_alphas().values()]
        for group in self.groups.values():
            values += [gates.eval_gates(la).flatten() for la in group.log_alphas().values()]
        if not values:
            return 1.0
        return float((torch.cat(values) > 0).float().mean())

    def gate_statistics(self) -> dict[str, float]:
        """Per part, open gates over every site's gates, overall and per edited layer."""
        out = {}
        with torch.no_grad():
            for part, values in self._eval_by_part().items():
                is_open = (values > 0).float()
                out[f"open_gate_fraction_{part}"] = float(is_open.mean())
                for slot, layer in enumerate(self.layers):
                    out[f"open_gate_fraction_{part}_l{layer}"] = float(is_open[slot].mean())
        return out

    def head_table(self) -> dict[str, list]:
        """The head site's table (no rows without a head site: no head is edited)."""
        if self.heads is not None:
            return self.heads.head_table()
        from jola_ray.editing.jola import _COLUMNS

        return {k: [] for k in _COLUMNS}

    def inspect(self):
        """``HeadEdit.inspect``; without a head site an empty table whose ``selected`` is still
        boolean (so ``table[table["selected"]]`` selects rows, not columns)."""
        table = super().inspect()
        return table.astype({"selected": bool}) if table.empty else table
