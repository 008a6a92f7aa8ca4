"""RED (Wu et al. 2024, "Advancing Parameter Efficiency in Fine-tuning via Representation
Editing"; reference code mlwu22/RED): a scaling vector (init ones) and a bias vector (init
zeros) per layer on the FFN output, ``h' = s * h + b``, one training stage
(``jola_ray.editing.red``). Settings are ``red.<field>``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from jola_ray.methods.base import Method, Stage, StageContext
from jola_ray.settings import setting


@dataclass
class REDSettings:
    layers: list[int] | None = setting(
        None, "decoder layers whose FFN output is edited (None: all, as RED)", kind="int_list", ge=0
    )


def _attach(ctx: StageContext):
    from jola_ray.editing.red import apply_red

    return apply_red(ctx.model, ctx.config)


def count(model, cfg: REDSettings) -> int:
    """``2 * hidden_size`` per edited layer."""
    from jola_ray.editing.red import count_red

    return count_red(model, cfg)


def load(model, path: str | Path):
    from jola_ray.editing.hooked import load_hooked
    from jola_ray.editing.red import REDEdit
    from jola_ray.editing.sites import find_ffn_sites, model_type_of

    def build(cfg: REDSettings) -> REDEdit:
        return REDEdit(find_ffn_sites(model, cfg.layers), cfg, model_type_of(model))

    return load_hooked(model, path, "red", REDSettings, build)


METHOD = Method(
    name="red",
    config=REDSettings,
    stages=lambda cfg: (Stage("main", _attach),),
    count=count,
    load=load,
    description="per-layer scaling and bias on the FFN output (RED)",
)
