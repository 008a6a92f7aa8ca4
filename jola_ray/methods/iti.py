"""ITI (Li et al. 2023, "Inference-Time Intervention"), for LoFiT's TruthfulQA comparison:
probe every head on the training split, keep the ``top_k`` by probe accuracy, shift them along
the mass-mean direction times ``alpha`` at inference (``jola_ray.editing.iti``). No training:
one ``build`` stage. Settings are ``iti.<field>``.

Labelled texts (``labelled_texts``): an example with ``choices`` and ``correct`` (TruthfulQA)
gives its prompt with every choice, true for the correct ones, false for the others (ITI
probes every true and false answer of the question); any other example gives its prompt with
its answer (true) and with an incorrect answer drawn as RepE's contrast pairs draw it (false).

Defaults: ITI's own TruthfulQA setting for LLaMA-7B, K = 48 heads and alpha = 15.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from jola_ray.methods.base import Method, Stage, StageContext
from jola_ray.settings import setting


@dataclass
class ITISettings:
    top_k: int = setting(48, "heads shifted, the best by probe accuracy (ITI: 48)", ge=1)
    alpha: float = setting(15.0, "shift strength in units of each head's std (ITI: 15)")


def labelled_texts(examples, seed: int) -> tuple[list[tuple[str, str, bool]], int]:
    """``([(prompt, answer, is_true)], skipped)`` from training examples (module docstring)."""
    from jola_ray.methods.repe import contrast_pairs

    texts, rest = [], []
    for e in examples:
        if e.choices and e.correct is not None:
            correct = set(e.correct)
            texts.extend((e.prompt, c, i in correct) for i, c in enumerate(e.choices))
        else:
            rest.append(e)
    pairs, skipped = contrast_pairs(rest, seed)
    for prompt, good, bad in pairs:
        texts.extend([(prompt, good, True), (prompt, bad, False)])
    return texts, skipped


def _attach(ctx: StageContext):
    from jola_ray.editing.iti import build_iti

    texts, _ = labelled_texts(ctx.train_examples or [], ctx.seed)
    return build_iti(ctx.model, ctx.tokenizer, ctx.config, texts, ctx.seed)


def count(model, cfg: ITISettings) -> int:
    """Nothing trains: the shifts are built from data (0 trainable parameters)."""
    return 0


def load(model, path: str | Path):
    from jola_ray.editing.hooked import load_hooked
    from jola_ray.editing.iti import ITIEdit
    from jola_ray.editing.sites import find_head_sites, model_type_of

    def build(cfg: ITISettings) -> ITIEdit:
        return ITIEdit(find_head_sites(model), cfg, model_type_of(model))

    return load_hooked(model, path, "iti", ITISettings, build)


METHOD = Method(
    name="iti",
    config=ITISettings,
    stages=lambda cfg: (Stage("build", _attach, kind="build"),),
    count=count,
    load=load,
    description="probe-selected heads shifted along their mass-mean direction (ITI)",
)
