"""RepE (Zou et al. 2023), the JoLA paper's inference-time baseline: reading vectors per layer
from contrast pairs of the training split, added to the residual stream with a coefficient
(``jola_ray.editing.repe``). No training: one ``build`` stage; the layers and the coefficient
are the searchable settings, chosen on dev like every other method's configuration. Settings
are ``repe.<field>``.

Contrast pairs (``contrast_pairs``): each training example gives one pair, its prompt continued
with the correct answer and with an incorrect one. The incorrect answer is the example's
``rejected`` answer where it has one (TruthfulQA); otherwise another answer drawn, with the
run's seed, from the distinct answers of the training split that are neither the example's
answer nor one of its aliases (for a classification task another label, for a generation task
another example's reference). An example with no other answer to draw is skipped and counted
(``repe_pairs_skipped`` in the trial's summary).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

from jola_ray.methods.base import Method, Stage, StageContext
from jola_ray.settings import setting


@dataclass
class RepESettings:
    layers: list[int] | None = setting(
        None,
        "decoder layers whose output is shifted; negative counts from the end (None: all)",
        kind="int_list",
    )
    coefficient: float = setting(
        1.0, "shift along the reading vector, in units of the mean contrast along it"
    )


def contrast_pairs(examples, seed: int) -> tuple[list[tuple[str, str, str]], int]:
    """``([(prompt, correct, incorrect)], skipped)`` from training examples (module docstring)."""
    rng = random.Random(seed)
    answers = sorted({e.answer for e in examples})
    pairs, skipped = [], 0
    for e in examples:
        if e.rejected:
            pairs.append((e.prompt, e.chosen or e.answer, e.rejected))
            continue
        others = [a for a in answers if a != e.answer and a not in e.aliases]
        if not others:
            skipped += 1
            continue
        pairs.append((e.prompt, e.answer, others[rng.randrange(len(others))]))
    return pairs, skipped


def _attach(ctx: StageContext):
    from jola_ray.editing.repe import build_repe
    from jola_ray.errors import DataError

    pairs, skipped = contrast_pairs(ctx.train_examples or [], ctx.seed)
    if not pairs:
        raise DataError(
            f"repe: the training split gives no contrast pair ({skipped} example(s) without an "
            "incorrect answer to draw)"
        )
    edit = build_repe(ctx.model, ctx.tokenizer, ctx.config, pairs)
    edit.pair_counts = {"repe_pairs": len(pairs), "repe_pairs_skipped": skipped}
    return edit


def count(model, cfg: RepESettings) -> int:
    """Nothing trains: the reading vectors are built from data (0 trainable parameters)."""
    return 0


def load(model, path: str | Path):
    from jola_ray.editing.hooked import load_hooked
    from jola_ray.editing.repe import RepEEdit, resolve_layers
    from jola_ray.editing.sites import find_residual_sites, model_type_of

    def build(cfg: RepESettings) -> RepEEdit:
        sites = find_residual_sites(model, resolve_layers(model, cfg.layers))
        return RepEEdit(sites, cfg, model_type_of(model))

    return load_hooked(model, path, "repe", RepESettings, build)


METHOD = Method(
    name="repe",
    config=RepESettings,
    stages=lambda cfg: (Stage("build", _attach, kind="build"),),
    count=count,
    load=load,
    description="reading vectors from contrast pairs added to the residual stream (RepE)",
)
