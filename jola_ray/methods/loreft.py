"""LoReFT (Wu et al. 2024, "ReFT"; reference library stanfordnlp/pyreft):
``h + R^T (W h + b - R h)`` on chosen layers' residual stream at the first ``first_n`` and last
``last_n`` prompt positions (pyreft's ``f7+l7`` is ``first_n=7, last_n=7``), one training stage
(``jola_ray.editing.loreft``). Settings are ``loreft.<field>``.

Defaults are pyreft's commonsense recipe (the ``loreft/train.py`` command of its README for
LLaMA-7B commonsense reasoning): rank 8, positions f7+l7, shared weights, all layers, dropout 0
(its learning rate 9e-4 is the first of the shipped spaces' LoReFT configurations).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from jola_ray.methods.base import Method, Stage, StageContext
from jola_ray.settings import setting


@dataclass
class LoReFTSettings:
    rank: int = setting(8, "rank r of the low-rank subspace (pyreft commonsense: 8)", ge=1)
    first_n: int = setting(7, "edit the first n prompt tokens (f7: 7)", ge=0)
    last_n: int = setting(7, "edit the last n prompt tokens (l7: 7)", ge=0)
    share_weights: bool = setting(
        True, "one intervention for prefix and suffix positions (pyreft --share_weights)"
    )
    layers: list[int] | None = setting(
        None, "decoder layers whose output is edited (None: all)", kind="int_list", ge=0
    )
    dropout: float = setting(0.0, "dropout on W h + b (pyreft commonsense: 0)", ge=0, lt=1)


def _positions(cfg: LoReFTSettings) -> tuple[int, int]:
    from jola_ray.errors import ConfigError

    if cfg.first_n == 0 and cfg.last_n == 0:
        raise ConfigError("loreft.first_n, loreft.last_n: at least one must be > 0")
    return cfg.first_n, cfg.last_n


def _attach(ctx: StageContext):
    import torch

    from jola_ray.editing.loreft import apply_loreft

    first, last = _positions(ctx.config)
    generator = torch.Generator().manual_seed(int(ctx.seed))
    return apply_loreft(ctx.model, ctx.config, first, last, generator)


def count(model, cfg: LoReFTSettings) -> int:
    """``(2 * hidden * rank + rank)`` per intervention; one per layer (two unshared)."""
    from jola_ray.editing.loreft import count_loreft

    return count_loreft(model, cfg, *_positions(cfg))


def load(model, path: str | Path):
    from jola_ray.editing.hooked import load_hooked
    from jola_ray.editing.loreft import LoReFTEdit
    from jola_ray.editing.sites import find_residual_sites, model_type_of

    def build(cfg: LoReFTSettings) -> LoReFTEdit:
        sites = find_residual_sites(model, cfg.layers)
        return LoReFTEdit(sites, cfg, model_type_of(model), *_positions(cfg))

    return load_hooked(model, path, "loreft", LoReFTSettings, build)


METHOD = Method(
    name="loreft",
    config=LoReFTSettings,
    stages=lambda cfg: (Stage("main", _attach),),
    count=count,
    load=load,
    description="low-rank representation intervention on prompt positions (LoReFT)",
)
