"""Apply a head edit to a model, and count an edit's parameters without building it."""

from __future__ import annotations

import torch
from torch import nn

from jola_ray.editing.base import HeadEdit
from jola_ray.editing.configs import JoLAConfig, LoFiTConfig
from jola_ray.editing.jola import JoLAEdit
from jola_ray.editing.lofit import LoFiTEdit
from jola_ray.editing.sites import find_head_sites, geometry_of
from jola_ray.errors import ConfigError

EDIT_CLASSES: dict[type, type[HeadEdit]] = {JoLAConfig: JoLAEdit, LoFiTConfig: LoFiTEdit}


def apply_edit(
    model: nn.Module,
    config: JoLAConfig | LoFiTConfig,
    generator: torch.Generator | int | None = None,
) -> HeadEdit:
    """Freeze ``model`` (``lm_head`` included), attach the edit as ``model.head_edit`` with a
    forward pre-hook on every edited ``o_proj``, and return it.

    The init is drawn on the CPU from ``generator`` (a ``torch.Generator`` or a seed), else from
    ``config.seed``, else from the global RNG, then moved to the model's device; edit parameters
    are fp32 whatever the model's dtype.
    """
    edit_cls = EDIT_CLASSES.get(type(config))
    if edit_cls is None:
        raise ConfigError(
            f"unknown edit config {type(config).__name__}; expected JoLAConfig or LoFiTConfig"
        )
    sites = find_head_sites(model)
    geometry = geometry_of(model, sites)
    gen = _generator(generator, config.seed)
    if isinstance(config, JoLAConfig) and config.site != "heads":  # the component study
        from jola_ray.editing.jola_sites import JoLASiteEdit

        edit = JoLASiteEdit(model, sites, geometry, config, gen)
    else:
        edit = edit_cls(sites, geometry, config, gen)
    edit.attach(model)
    return edit


def count_edit_params(model_or_config, config: JoLAConfig | LoFiTConfig) -> int:
    """Trainable parameters ``config`` would add to a model (or to a model built from a HF
    config on the meta device, which costs no memory)."""
    edit_cls = EDIT_CLASSES.get(type(config))
    if edit_cls is None:
        raise ConfigError(f"unknown edit config {type(config).__name__}")
    model = model_or_config
    if not isinstance(model, nn.Module):
        model = build_meta_model(model_or_config)
    sites = find_head_sites(model)
    if isinstance(config, JoLAConfig) and config.site != "heads":
        from jola_ray.editing.jola_sites import JoLASiteEdit

        return JoLASiteEdit.count(model, geometry_of(model, sites), config)
    return edit_cls.count(geometry_of(model, sites), config)


def build_meta_model(hf_config) -> nn.Module:
    """``AutoModelForCausalLM.from_config`` on the meta device: the module tree, no weights."""
    from transformers import AutoModelForCausalLM

    from jola_ray.errors import UnsupportedModelError

    with torch.device("meta"):
        try:
            return AutoModelForCausalLM.from_config(hf_config)
        except ValueError as err:
            model_type = getattr(hf_config, "model_type", "?")
            raise UnsupportedModelError(
                f"cannot build a causal LM for model type {model_type!r}: {err}"
            ) from None


def _generator(generator: torch.Generator | int | None, seed: int | None) -> torch.Generator | None:
    if isinstance(generator, torch.Generator):
        return generator
    if generator is None and seed is None:
        return None
    return torch.Generator().manual_seed(int(seed if generator is None else generator))
