"""One fine-tuning run of a frozen model with one registered method, trained with TRL.

    from jola_ray.train import RunConfig, run
    cfg = RunConfig.from_dict({"model": "tiny-llama", "task": "demo_vowel", "lr": 5e-3})
    metrics = run(cfg, report=lambda metrics, checkpoint_dir: ...)

This layer knows nothing of Ray: the sweep passes ``report``. Heavy modules (torch, TRL) load
only when ``run`` is called.
"""

from __future__ import annotations

from jola_ray.train.config import PROFILES, RunConfig, leaf_fields, profile_defaults

__all__ = ["PROFILES", "RunConfig", "leaf_fields", "profile_defaults", "run"]


def run(cfg, report=None, resume_from=None, **kwargs):
    """See ``jola_ray.train.pipeline.run``."""
    from jola_ray.train.pipeline import run as _run

    return _run(cfg, report=report, resume_from=resume_from, **kwargs)
