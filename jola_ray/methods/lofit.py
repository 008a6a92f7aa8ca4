"""LoFiT (Yin, Ye, Durrett, NeurIPS 2024): two stages on head outputs before ``o_proj``.

Stage 1 trains scaling vectors on every head with an L1 penalty and picks the top-K heads by
the L2 norm of their vector; that edit is removed (the model is exactly the base again) and
stage 2 trains biases on those heads. Settings are ``lofit.<field>``.
"""

from __future__ import annotations

from dataclasses import dataclass

from jola_ray.methods.base import Method, Stage, StageContext
from jola_ray.methods.heads import HeadEditHandle, load_head_edit
from jola_ray.settings import setting


@dataclass
class LoFiTSettings:
    top_k: int | None = setting(
        None, "heads kept after stage 1 (None: 10% of all heads)", kind="int", ge=1
    )
    l1_lambda: float = setting(
        5e-4, "stage-1 L1 weight on the scaling vectors (reference scripts: 5e-4..5e-3)", ge=0
    )
    stage1_lr: float | None = setting(None, "stage-1 learning rate (None: lr)", kind="float", gt=0)
    init_std: float = setting(1e-3, "std of the normal init of the vectors", ge=0)


def _scale(ctx: StageContext) -> HeadEditHandle:
    from jola_ray.editing import LoFiTConfig, apply_edit

    cfg = ctx.config
    edit = apply_edit(
        ctx.model,
        LoFiTConfig(
            stage="scale",
            top_k=cfg.top_k,
            l1_lambda=cfg.l1_lambda,
            init_std=cfg.init_std,
            seed=ctx.seed,
        ),
    )
    return HeadEditHandle(edit, lambda e, step, total: e.penalty())


def _selected_heads(handle: HeadEditHandle) -> dict:
    from jola_ray.editing import select_top_heads

    return {"heads": [list(h) for h in select_top_heads(handle.edit)]}


def _bias(ctx: StageContext) -> HeadEditHandle:
    from jola_ray.editing import LoFiTConfig, apply_edit

    heads = tuple(tuple(h) for h in ctx.carry["heads"])
    cfg = ctx.config
    edit = apply_edit(
        ctx.model, LoFiTConfig(stage="bias", heads=heads, init_std=cfg.init_std, seed=ctx.seed)
    )
    return HeadEditHandle(edit)


def _count(model, cfg: LoFiTSettings) -> dict:
    """Stage 2's trainable parameters (the edit that is tested and saved, ``K * head_dim``) as
    ``trainable_params``, with stage 1's (``L * H * head_dim``) and K."""
    from jola_ray.editing import LoFiTConfig, count_edit_params
    from jola_ray.editing.configs import default_top_k
    from jola_ray.editing.sites import find_head_sites, geometry_of
    from jola_ray.errors import ConfigError

    g = geometry_of(model, find_head_sites(model))
    k = cfg.top_k or default_top_k(g.num_layers, g.num_heads)
    if not 0 < k <= g.total_heads:
        raise ConfigError(f"lofit.top_k: expected 1..{g.total_heads} (the model's heads), got {k}")
    return {
        "trainable_params": count_edit_params(model, LoFiTConfig(stage="bias", top_k=k)),
        "stage1_params": count_edit_params(model, LoFiTConfig(stage="scale")),
        "top_k": k,
    }


METHOD = Method(
    name="lofit",
    config=LoFiTSettings,
    stages=lambda cfg: (
        Stage(
            "stage1",
            _scale,
            lr=lambda c: c.stage1_lr,
            finish=_selected_heads,
            prefix="s1_",
        ),
        Stage("stage2", _bias),
    ),
    count=_count,
    load=lambda model, path: load_head_edit(model, path),
    packs=True,
    description="stage 1 scaling + L1 picks the top-K heads, stage 2 trains their biases",
)
