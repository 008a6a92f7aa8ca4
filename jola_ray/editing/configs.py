"""The edit methods' configs: plain dataclasses whose field names are the YAML keys.

Each validates itself on construction and lists every bad field at once (``ConfigError``);
``from_dict`` also rejects unknown keys. Both round-trip through ``to_dict`` (JSON-safe), which
is what an edit file stores in its metadata.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from jola_ray.errors import ConfigError

JOLA_PENALTIES = ("paper", "reference")
JOLA_PARTS = ("both", "add", "mul")
JOLA_GATES = ("two", "shared", "none")
JOLA_SITES = ("heads", "ffn", "residual", "bias")
LOFIT_STAGES = ("scale", "bias")


@dataclass
class JoLAConfig:
    """JoLA: gated per-head scaling and bias, ``z' = (1 + g_m * m) * z + g_a * a``.

    Fields:
        gate_lambda: weight of the expected-L0 penalty in the ``paper`` form,
            ``gate_lambda * sum over all gates P(gate != 0)``. The paper's value could not be
            read, so ``"auto"`` (the default) resolves at apply time to ``0.1 / (L * H**2)``
            (L edited layers, H edited heads per layer): the per-gate gradient of the reference
            code's penalty on the additive gates at its first step (lambda_0 = 0.1 divided by
            L * H twice). Any float overrides it, so a search space can vary it.
        penalty: ``"paper"`` (above) or ``"reference"``: the released code's
            ``(lambda_t * sum_l mean_h P(g_a != 0) + (1 - lambda_t) * sum_l mean_h P(g_m != 0))
            / (L * H)``, where the caller passes ``lambda_t`` to ``penalty()`` (its schedule
            belongs to training; ``gate_lambda`` is then unused).
        parts: ``"both"``, or ``"add"`` / ``"mul"`` for the paper's additive-only and
            multiplicative-only ablations (the other vector and its gate do not exist).
        gates: ``"two"`` (the paper's: one gate per part and head), ``"shared"`` (one gate per
            head multiplies both parts, ``z' = (1 + g * m) * z + g * a``) or ``"none"`` (no
            gates, the edit always on: ``z' = (1 + m) * z + a``, no penalty): the paper's gate
            ablations.
        site: where the edit sits (the component study): ``"heads"`` (the paper's, before
            ``o_proj``), ``"ffn"`` (each layer's FFN output), ``"residual"`` (each layer's
            output, the residual stream), ``"bias"`` (a gated bias on every linear projection),
            or a ``+``-joined combination such as ``"heads+ffn"`` (``jola_sites.py``).
        layers: model layer indices to edit (None: all).
        heads: head indices to edit in every edited layer (None: all).
        per_example_gates: at training, one gate sample per example instead of one per forward.
        temperature: Hard-Concrete temperature (0.33 in the paper).
        init_std: std of the normal init of m and a.
        seed: seed of the init (``apply_edit`` also takes a ``torch.Generator``).
    """

    gate_lambda: float | str = "auto"
    penalty: str = "paper"
    parts: str = "both"
    gates: str = "two"
    site: str = "heads"
    layers: tuple[int, ...] | None = None
    heads: tuple[int, ...] | None = None
    per_example_gates: bool = False
    temperature: float = 0.33
    init_std: float = 1e-3
    seed: int | None = None

    method = "jola"

    def __post_init__(self) -> None:
        errors: list[str] = []
        if not (self.gate_lambda == "auto" or _is_number(self.gate_lambda, nonneg=True)):
            errors.append(
                f"gate_lambda: expected 'auto' or a number >= 0, got {self.gate_lambda!r}"
            )
        _choice(self.penalty, "penalty", JOLA_PENALTIES, errors)
        _choice(self.parts, "parts", JOLA_PARTS, errors)
        _choice(self.gates, "gates", JOLA_GATES, errors)
        names = str(self.site).split("+")
        if not all(n in JOLA_SITES for n in names) or len(set(names)) != len(names):
            errors.append(
                f"site: expected one of {', '.join(JOLA_SITES)} or a '+'-joined combination "
                f"without repeats (heads+ffn), got {self.site!r}"
            )
        self.layers = _index_tuple(self.layers, "layers", errors)
        self.heads = _index_tuple(self.heads, "heads", errors)
        if not isinstance(self.per_example_gates, bool):
            errors.append(f"per_example_gates: expected true/false, got {self.per_example_gates!r}")
        if not _is_number(self.temperature) or self.temperature <= 0:
            errors.append(f"temperature: expected a number > 0, got {self.temperature!r}")
        if not _is_number(self.init_std, nonneg=True):
            errors.append(f"init_std: expected a number >= 0, got {self.init_std!r}")
        _seed(self.seed, errors)
        _raise(self, errors)

    @property
    def has_add(self) -> bool:
        return self.parts in ("both", "add")

    @property
    def has_mul(self) -> bool:
        return self.parts in ("both", "mul")

    def to_dict(self) -> dict[str, Any]:
        return _to_dict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> JoLAConfig:
        return _from_dict(cls, data)


@dataclass
class LoFiTConfig:
    """LoFiT (two stages, two runs).

    Fields:
        stage: ``"scale"``: stage 1, ``z' = (1 + A) * z`` on every head with the L1 penalty
            ``l1_lambda * sum |A|``; rank heads with ``select_top_heads``. ``"bias"``: stage 2,
            ``z' = z + v`` on ``heads`` only, no penalty.
        heads: the (layer, head) pairs of stage 2 (from ``select_top_heads`` of a stage-1 edit);
            required when a stage-2 edit is applied.
        top_k: number of heads stage 1 selects, and stage 2's K when counting parameters
            without ``heads`` (None: 10% of all heads, as the reference code).
        l1_lambda: L1 weight of stage 1 (the reference scripts use 5e-4, 1e-3 or 5e-3 per task;
            kept here so ``edit.penalty()`` is the full regulariser for both methods). The
            default is the run's (``lofit.l1_lambda`` in ``jola_ray.methods.lofit``): 5e-4.
        init_std: std of the normal init of A and v.
        seed: seed of the init.
    """

    stage: str = "scale"
    heads: tuple[tuple[int, int], ...] | None = None
    top_k: int | None = None
    l1_lambda: float = 5e-4
    init_std: float = 1e-3
    seed: int | None = None

    method = "lofit"

    def __post_init__(self) -> None:
        errors: list[str] = []
        _choice(self.stage, "stage", LOFIT_STAGES, errors)
        if self.heads is not None:
            try:
                pairs = tuple((int(layer), int(head)) for layer, head in self.heads)
            except (TypeError, ValueError):
                errors.append(f"heads: expected a list of [layer, head] pairs, got {self.heads!r}")
            else:
                if any(x < 0 for pair in pairs for x in pair):
                    errors.append(f"heads: indices must be >= 0, got {self.heads!r}")
                elif len(set(pairs)) != len(pairs):
                    errors.append(f"heads: duplicate (layer, head) pairs in {self.heads!r}")
                self.heads = pairs
        if self.top_k is not None and (not isinstance(self.top_k, int) or self.top_k <= 0):
            errors.append(f"top_k: expected a positive integer, got {self.top_k!r}")
        if not _is_number(self.l1_lambda, nonneg=True):
            errors.append(f"l1_lambda: expected a number >= 0, got {self.l1_lambda!r}")
        if not _is_number(self.init_std, nonneg=True):
            errors.append(f"init_std: expected a number >= 0, got {self.init_std!r}")
        _seed(self.seed, errors)
        _raise(self, errors)

    def to_dict(self) -> dict[str, Any]:
        return _to_dict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LoFiTConfig:
        return _from_dict(cls, data)


def default_top_k(num_layers: int, num_heads: int) -> int:
    """LoFiT's default K: 10% of all heads (``int(0.1 * H * L)``, at least 1)."""
    return max(1, int(0.1 * num_layers * num_heads))


def _is_number(value, nonneg: bool = False) -> bool:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    return ok and (not nonneg or value >= 0)


def _choice(value, name: str, allowed: tuple[str, ...], errors: list[str]) -> None:
    if value not in allowed:
        errors.append(f"{name}: expected one of {', '.join(allowed)}, got {value!r}")


def _index_tuple(value, name: str, errors: list[str]):
    if value is None:
        return None
    try:
        items = tuple(value)
    except TypeError:
        errors.append(f"{name}: expected a list of indices, got {value!r}")
        return value
    if not items or not all(
        isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in items
    ):
        errors.append(f"{name}: expected a non-empty list of indices >= 0, got {value!r}")
        return value
    if len(set(items)) != len(items):
        errors.append(f"{name}: duplicate indices in {value!r}")
        return value
    return tuple(sorted(items))


def _seed(value, errors: list[str]) -> None:
    if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
        errors.append(f"seed: expected an integer or null, got {value!r}")


def _raise(config, errors: list[str]) -> None:
    if errors:
        raise ConfigError(f"invalid {type(config).__name__}:\n  " + "\n  ".join(errors))


def _to_dict(config) -> dict[str, Any]:
    out = {}
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if isinstance(value, tuple):
            value = [list(v) if isinstance(v, tuple) else v for v in value]
        out[f.name] = value
    return out


def _from_dict(cls, data: dict[str, Any]):
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(
            f"invalid {cls.__name__}: unknown field(s) {', '.join(unknown)}; "
            f"known: {', '.join(sorted(known))}"
        )
    return cls(**data)
