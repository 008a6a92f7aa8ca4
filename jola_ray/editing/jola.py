"""JoLA: per head a gated scaling vector m and a gated bias a on the head output.

``z' = (1 + g_m * m) * z + g_a * a`` for every edited (layer, head), every token, with two
Hard-Concrete gates per head (``gates.py``); the gate ablations ``gates: shared`` (one gate
``g = g_m = g_a`` per head) and ``gates: none`` (``g_m = g_a = 1``: no gate, no penalty).
Parameters are stacked ``[L_e, H_e, d]`` (vectors) and ``[L_e, H_e]`` (log alpha) over the
edited layers and heads, stored fp32; ``layer_factors`` builds the layer's ``[H, d]`` scale and
bias once (a trial pack stacks them over its configurations) and the hook applies them to all
heads and tokens in one ``addcmul`` in the activation dtype.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from jola_ray.editing import gates
from jola_ray.editing.base import HeadEdit
from jola_ray.editing.configs import JoLAConfig
from jola_ray.editing.sites import HeadGeometry, HeadSite
from jola_ray.errors import ConfigError

# lambda_0 of the reference code's additive-gate weight schedule ("expon": 0.1 * exp(-0.01 t)).
REFERENCE_LAMBDA_0 = 0.1


class JoLAEdit(HeadEdit):
    method = "jola"

    def __init__(
        self,
        sites: list[HeadSite],
        geometry: HeadGeometry,
        config: JoLAConfig,
        generator: torch.Generator,
    ) -> None:
        super().__init__(sites, geometry, config)
        self.layers = _check_indices(config.layers, geometry.num_layers, "layers")
        heads = _check_indices(config.heads, geometry.num_heads, "heads")
        self._slot = {layer: i for i, layer in enumerate(self.layers)}
        self._all_heads = len(heads) == geometry.num_heads
        self.register_buffer("head_index", torch.tensor(heads, dtype=torch.long))
        n_layers, n_heads, d = len(self.layers), len(heads), geometry.head_dim
        if config.gate_lambda == "auto":
            self.gate_lambda = REFERENCE_LAMBDA_0 / (n_layers * n_heads**2)
        else:
            self.gate_lambda = float(config.gate_lambda)
        bound = math.sqrt(6.0 / (n_heads + 1))  # Xavier-uniform on a [H, 1] tensor

        def vectors() -> nn.Parameter:
            return nn.Parameter(
                torch.randn(n_layers, n_heads, d, generator=generator) * config.init_std
            )

        def log_alpha() -> nn.Parameter:
            u = torch.rand(n_layers, n_heads, generator=generator)
            return nn.Parameter((2 * u - 1) * bound)

        # Draw order is fixed (add, then mul) so a seed gives the same vectors for every
        # `parts` and `gates`; a shared gate takes the first part's draw, `none` drops both.
        self.n_layers, self.n_heads = n_layers, n_heads
        self.add_vector = vectors() if config.has_add else None
        add_la = log_alpha() if config.has_add else None
        self.mul_vector = vectors() if config.has_mul else None
        mul_la = log_alpha() if config.has_mul else None
        two = config.gates == "two"
        self.add_log_alpha = add_la if two else None
        self.mul_log_alpha = mul_la if two else None
        shared = add_la if add_la is not None else mul_la
        self.shared_log_alpha = shared if config.gates == "shared" else None

    @staticmethod
    def count(geometry: HeadGeometry, config: JoLAConfig) -> int:
        """``L_e * (parts * H_e * d + gates * H_e)``: L*(2*H*d + 2*H) for the full edit
        (gates per head: one per part, 1 shared, 0 without gates)."""
        n_layers = len(config.layers) if config.layers else geometry.num_layers
        n_heads = len(config.heads) if config.heads else geometry.num_heads
        parts = 2 if config.parts == "both" else 1
        n_gates = {"two": parts, "shared": 1, "none": 0}[config.gates]
        return n_layers * (parts * n_heads * geometry.head_dim + n_gates * n_heads)

    def edited_layers(self) -> list[int]:
        return list(self.layers)

    def _log_alphas(self) -> dict[str, torch.Tensor]:
        """The gates' parameters by name: ``add``/``mul`` (two gates), ``shared``, or none."""
        out = {}
        if self.add_log_alpha is not None:
            out["add"] = self.add_log_alpha
        if self.mul_log_alpha is not None:
            out["mul"] = self.mul_log_alpha
        if self.shared_log_alpha is not None:
            out["shared"] = self.shared_log_alpha
        return out

    def _parts(self) -> list[str]:
        return [p for p, v in (("add", self.add_vector), ("mul", self.mul_vector)) if v is not None]

    def _by_part(self, values: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Per-gate values -> per-part values: a shared gate stands for every part."""
        if "shared" in values:
            return {part: values["shared"] for part in self._parts()}
        return values

    def layer_gates(self, slot: int, batch: int) -> dict[str, torch.Tensor]:
        """Gates of one edited layer per part: ``[H_e]``, or ``[batch, H_e]`` when sampled per
        example; a shared gate is one sample used by both parts; empty with ``gates: none``."""
        out = {}
        for name, log_alpha in self._log_alphas().items():
            la = log_alpha[slot]
            if not self.training:
                out[name] = gates.eval_gates(la)
            elif self.config.per_example_gates:
                out[name] = gates.sample_gates(
                    la, (batch, la.shape[0]), self.config.temperature, self.noise_generator
                )
            else:
                out[name] = gates.sample_gates(
                    la, None, self.config.temperature, self.noise_generator
                )
        return self._by_part(out)

    def layer_factors(self, layer: int, batch: int):
        """``(1 + g_m * m, g_a * a)`` of ``layer`` over all heads, ``[(b,) H, d]`` each."""
        slot = self._slot[layer]
        g = self.layer_gates(slot, batch)
        self._record(layer, g)
        scale = bias = None
        if self.mul_vector is not None:
            m = self.mul_vector[slot]  # [H_e, d]
            scale = 1 + (g["mul"].unsqueeze(-1) * m if "mul" in g else m)  # [(b,) H_e, d]
        if self.add_vector is not None:
            a = self.add_vector[slot]  # [H_e, d]
            bias = g["add"].unsqueeze(-1) * a if "add" in g else a  # [(b,) H_e, d]
        lead = next(iter(g.values())).shape[:-1] if g else ()  # () per forward, (b,) per example
        if not self._all_heads:  # scatter the edited heads into an identity [(b,) H, d]
            full = (*lead, self.geometry.num_heads, self.geometry.head_dim)
            if scale is not None:
                scale = scale.new_ones(full).index_copy(-2, self.head_index, scale)
            if bias is not None:
                bias = bias.new_zeros(full).index_copy(-2, self.head_index, bias)
        return scale, bias

    def penalty(self, lambda_t: float | None = None) -> torch.Tensor:
        """Expected-L0 penalty.

        ``paper``: ``gate_lambda * sum over all gates P(g != 0)``. ``reference``:
        ``(lambda_t * sum_l mean_h P(g_a != 0) + (1 - lambda_t) * sum_l mean_h P(g_m != 0))
        / (L * H)`` with ``lambda_t`` from the caller's schedule (default 0.1, its start value);
        a shared gate stands for both parts (weight 1). Without gates the penalty is 0.
        """
        if not self._log_alphas():
            return self._vectors()[0].new_zeros(())
        probs = {
            part: gates.open_probability(la, self.config.temperature)
            for part, la in self._log_alphas().items()
        }
        if self.config.penalty == "paper":
            return self.gate_lambda * sum(p.sum() for p in probs.values())
        lam = REFERENCE_LAMBDA_0 if lambda_t is None else float(lambda_t)
        n_layers, n_heads = self.add_or_mul_shape()
        weights = {"add": lam, "mul": 1.0 - lam, "shared": 1.0}
        total = sum(weights[part] * p.mean(dim=1).sum() for part, p in probs.items())
        return total / (n_layers * n_heads)

    def add_or_mul_shape(self) -> tuple[int, int]:
        return self.n_layers, self.n_heads

    def _vectors(self) -> list[torch.Tensor]:
        return [v for v in (self.add_vector, self.mul_vector) if v is not None]

    def eval_gate_values(self) -> dict[str, torch.Tensor]:
        """Deterministic gates per part, ``[L_e, H_e]`` (a shared gate under both parts; ones
        without gates: the edit is always on)."""
        values = {name: gates.eval_gates(la) for name, la in self._log_alphas().items()}
        if not values:
            ones = self._vectors()[0].new_ones(self.n_layers, self.n_heads)
            return {part: ones for part in self._parts()}
        return self._by_part(values)

    def open_gate_fraction(self) -> float:
        """Share of open gates (eval gate > 0) over the edit's gates (1.0 without gates)."""
        values = {name: gates.eval_gates(la) for name, la in self._log_alphas().items()}
        if not values:
            return 1.0
        flat = torch.cat([g.flatten() for g in values.values()])
        return float((flat > 0).float().mean())

    def gate_statistics(self) -> dict[str, float]:
        """Per part, the share of open gates (eval gate > 0), overall and per edited layer:
        ``open_gate_fraction_<part>`` and ``open_gate_fraction_<part>_l<layer>`` (what the gate
        dynamics and sparsity analyses read per epoch)."""
        out = {}
        with torch.no_grad():
            for part, values in self.eval_gate_values().items():
                is_open = (values > 0).float()  # [L_e, H_e]
                out[f"open_gate_fraction_{part}"] = float(is_open.mean())
                for slot, layer in enumerate(self.layers):
                    out[f"open_gate_fraction_{part}_l{layer}"] = float(is_open[slot].mean())
        return out

    def head_table(self) -> dict[str, list]:
        n_layers, n_heads = self.add_or_mul_shape()
        zeros = torch.zeros(n_layers, n_heads)
        g = {k: v.detach().float().cpu() for k, v in self.eval_gate_values().items()}
        p = {
            k: gates.open_probability(v, self.config.temperature).detach().float().cpu()
            for k, v in self._log_alphas().items()
        }
        p = self._by_part(p) if p else {part: zeros + 1.0 for part in self._parts()}
        norms = {
            "add": _norms(self.add_vector, zeros),
            "mul": _norms(self.mul_vector, zeros),
        }
        gate_add, gate_mul = g.get("add", zeros), g.get("mul", zeros)
        selected = (gate_add > 0) | (gate_mul > 0)
        heads = self.head_index.tolist()
        table: dict[str, list] = {k: [] for k in _COLUMNS}
        for i, layer in enumerate(self.layers):
            for j, head in enumerate(heads):
                row = {
                    "method": self.method,
                    "layer": layer,
                    "head": head,
                    "gate_add": float(gate_add[i, j]),
                    "gate_mul": float(gate_mul[i, j]),
                    "norm_add": float(norms["add"][i, j]),
                    "norm_mul": float(norms["mul"][i, j]),
                    "p_open_add": float(p["add"][i, j]) if "add" in p else 0.0,
                    "p_open_mul": float(p["mul"][i, j]) if "mul" in p else 0.0,
                    "selected": bool(selected[i, j]),
                }
                for key, value in row.items():
                    table[key].append(value)
        return table


_COLUMNS = (
    "method",
    "layer",
    "head",
    "gate_add",
    "gate_mul",
    "norm_add",
    "norm_mul",
    "p_open_add",
    "p_open_mul",
    "selected",
)


def _norms(vectors: torch.Tensor | None, zeros: torch.Tensor) -> torch.Tensor:
    if vectors is None:
        return zeros
    return vectors.detach().float().norm(dim=-1).cpu()  # [L, H, d] -> [L, H]


def _check_indices(chosen: tuple[int, ...] | None, size: int, name: str) -> list[int]:
    if chosen is None:
        return list(range(size))
    bad = [i for i in chosen if i >= size]
    if bad:
        raise ConfigError(
            f"{name}: {bad} out of range; the model has {size} {name} (0..{size - 1})"
        )
    return list(chosen)


def all_gates_closed_warning(table) -> str | None:
    """The warning for a JoLA edit whose every gate ended closed (``inspect()``'s table).

    With every gate at 0 the edit changes nothing: the model is the base model and its score is
    the zero-shot one (a learning rate far too high drives every gate shut).
    """
    if len(table) == 0 or bool(table["selected"].any()):
        return None
    return (
        f"every gate of the JoLA edit is closed ({len(table)} heads): the edit does nothing and "
        "the model scores as the base model; lower lr or gate_lambda"
    )
