"""Zero-shot: the untouched base model, evaluated once (no settings, no stages)."""

from __future__ import annotations

from dataclasses import dataclass

from jola_ray.methods.base import Method


@dataclass
class ZeroShotSettings:
    """No settings: the base model as it is."""


METHOD = Method(
    name="zero_shot",
    config=ZeroShotSettings,
    stages=lambda cfg: (),
    count=lambda model, cfg: 0,
    description="the frozen base model without any edit",
)
