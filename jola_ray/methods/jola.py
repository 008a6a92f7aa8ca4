"""JoLA (Lai, Fraser, Titov, ICML 2025): gated per-head scaling and bias, one training stage.

``z' = (1 + g_m * m) * z + g_a * a`` on every head output before ``o_proj``, Hard-Concrete
gates, expected-L0 penalty (``jola_ray.editing.jola``). Settings are ``jola.<field>``.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from jola_ray.methods.base import Method, Stage, StageContext
from jola_ray.methods.heads import HeadEditHandle, load_head_edit
from jola_ray.settings import setting

# jola.site: one site or a '+'-joined combination, in this order (heads+ffn, not ffn+heads).
_SITES = ("heads", "ffn", "residual", "bias")
SITE_CHOICES = tuple(
    "+".join(c) for n in range(1, len(_SITES) + 1) for c in itertools.combinations(_SITES, n)
)


@dataclass
class JoLASettings:
    temperature: float = setting(0.33, "Hard-Concrete gate temperature", gt=0)
    gate_lambda: float | str = setting(
        "auto", "weight of the gate penalty: a number or 'auto'", kind="auto_float", ge=0
    )
    penalty: str = setting(
        "paper",
        "paper (expected L0) or reference (the code's per-layer normalised form)",
        choices=("paper", "reference"),
    )
    gate_schedule: str = setting(
        "fixed",
        "gate-penalty weight schedule (reference penalty)",
        choices=("fixed", "expon", "linear", "cyclic"),
    )
    parts: str = setting(
        "both",
        "which JoLA vectors are edited (add/mul: the ablations)",
        choices=("both", "add", "mul"),
    )
    gates: str = setting(
        "two",
        "gates per head: two (one per part), shared (one for both parts) or none (edit always "
        "on, no penalty): the gate ablations",
        choices=("two", "shared", "none"),
    )
    site: str = setting(
        "heads",
        "where the edit sits: heads, ffn, residual, bias, or a '+'-joined combination "
        "(heads+ffn): the component study",
        choices=SITE_CHOICES,
    )
    layers: list[int] | None = setting(None, "layers to edit (None: all)", kind="int_list", ge=0)
    heads: list[int] | None = setting(
        None, "heads edited in every edited layer (None: all)", kind="int_list", ge=0
    )
    gate_cyclic_start: float | None = setting(
        None,
        "cyclic gate schedule's weight at step 0 (None: the formula's 0.5; reference code 0.1)",
        kind="float",
        ge=0,
        le=1,
    )
    gate_skip_at_zero: bool = setting(
        False, "no gate penalty on steps whose weight lambda_t is 0 (the reference code's guard)"
    )
    per_example_gates: bool = setting(False, "sample gate noise per example, not per batch")
    init_std: float = setting(1e-3, "std of the normal init of m and a", ge=0)


def gate_weight(
    name: str,
    step: int,
    total_steps: int,
    fixed: float = 0.1,
    cyclic_start: float | None = None,
) -> float:
    """The reference code's gate-penalty weight ``lambda_t`` at train step ``step``.

    The reference penalty is ``lambda_t * P_add + (1 - lambda_t) * P_mul``. ``t`` counts optimizer
    steps of training only; the reference code counted every ``compute_loss`` call, evaluation
    batches included, so its ``lambda_t`` decayed faster (documented in docs/training.md).

    - ``fixed``: ``fixed`` (0.1, the reference's starting value, unless configured);
    - ``expon``: ``0.1 * exp(-0.01 t)``;
    - ``linear``: from 0 to 0.2 over the run's ``total_steps``;
    - ``cyclic``: ``0.5 + 0.5 * sin(2 pi t / 20)``; at step 0 ``cyclic_start`` when given (the
      reference code starts its cyclic weight at 0.1, not at the formula's 0.5).
    """
    if name == "fixed":
        return fixed
    if name == "expon":
        return 0.1 * math.exp(-0.01 * step)
    if name == "linear":
        return 0.2 * min(1.0, step / max(1, total_steps))
    if name == "cyclic":
        if step == 0 and cyclic_start is not None:
            return cyclic_start
        return 0.5 + 0.5 * math.sin(2 * math.pi * step / 20)
    raise ValueError(f"unknown gate schedule {name!r}")


def edit_config(cfg: JoLASettings, seed: int | None):
    """The editing layer's ``JoLAConfig`` (same field names) for these settings."""
    from jola_ray.editing import JoLAConfig

    return JoLAConfig(
        gate_lambda=cfg.gate_lambda,
        penalty=cfg.penalty,
        parts=cfg.parts,
        gates=cfg.gates,
        site=cfg.site,
        layers=tuple(cfg.layers) if cfg.layers else None,
        heads=tuple(cfg.heads) if cfg.heads else None,
        per_example_gates=cfg.per_example_gates,
        temperature=cfg.temperature,
        init_std=cfg.init_std,
        seed=seed,
    )


def reference_penalty(
    penalty: Callable[[float], Any],
    schedule: str,
    total_steps: int,
    cyclic_start: float | None = None,
    skip_at_zero: bool = False,
) -> Callable[[int], Any]:
    """step -> the reference penalty form's term: ``penalty(lambda_t)`` with ``lambda_t`` from
    ``gate_weight``. ``skip_at_zero``: no penalty at all (a zero tensor) on steps where
    ``lambda_t`` is exactly 0, as the reference code's ``if lambda != 0`` guard does (its
    ``linear`` weight at step 0, ``cyclic`` at steps 15, 35, ...); the formula alone would still
    apply the multiplicative-gate term ``(1 - lambda_t) * P_mul`` there.
    """

    def at(step: int):
        lam = gate_weight(schedule, step, total_steps, cyclic_start=cyclic_start)
        if skip_at_zero and lam == 0.0:
            import torch

            return torch.zeros(())
        return penalty(lam)

    return at


def _penalty_rule(schedule: str, cyclic_start: float | None = None, skip_at_zero: bool = False):
    def rule(edit, step: int, total_steps: int):
        if edit.config.penalty == "paper":
            return edit.penalty()
        at = reference_penalty(edit.penalty, schedule, total_steps, cyclic_start, skip_at_zero)
        return at(step)

    return rule


def _attach(ctx: StageContext) -> HeadEditHandle:
    from jola_ray.editing import apply_edit

    edit = apply_edit(ctx.model, edit_config(ctx.config, ctx.seed))
    cfg = ctx.config
    rule = _penalty_rule(cfg.gate_schedule, cfg.gate_cyclic_start, cfg.gate_skip_at_zero)
    return HeadEditHandle(edit, rule)


def _unpacked(cfg: JoLASettings) -> str | None:
    """Only the head site packs: the other sites' hooks edit whole-layer outputs with one
    configuration's vectors (no packed form)."""
    if cfg.site == "heads":
        return None
    return f"jola.site {cfg.site!r} runs unpacked (only jola.site 'heads' packs)"


def _count(model, cfg: JoLASettings) -> int:
    from jola_ray.editing import count_edit_params

    return count_edit_params(model, edit_config(cfg, None))


METHOD = Method(
    name="jola",
    config=JoLASettings,
    stages=lambda cfg: (Stage("main", _attach),),
    count=_count,
    load=lambda model, path: load_head_edit(model, path, _penalty_rule("fixed")),
    packs=True,
    unpacked=_unpacked,
    description="gated per-head scaling and bias, one stage, expected-L0 penalty",
)
