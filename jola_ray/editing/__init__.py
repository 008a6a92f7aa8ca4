"""Head-edit methods on a frozen Hugging Face causal LM: JoLA and LoFiT.

Every method edits the per-head attention outputs ``z`` (batch, seq, H, head_dim) at the input
of each decoder layer's attention output projection, through a forward pre-hook on ``o_proj``.

    from jola_ray.editing import JoLAConfig, apply_edit, save_edit, load_edit
    edit = apply_edit(model, JoLAConfig(seed=0))   # base frozen, model.head_edit registered
    loss = task_loss + edit.penalty()
    edit.inspect()                                 # pandas: one row per (layer, head)
    save_edit(edit, "edit.safetensors"); edit.remove()

Names are imported lazily so that ``jola_ray.editing.commands`` (imported by the CLI at start)
does not pull in torch.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "JoLAConfig": "jola_ray.editing.configs",
    "LoFiTConfig": "jola_ray.editing.configs",
    "apply_edit": "jola_ray.editing.edit",
    "count_edit_params": "jola_ray.editing.edit",
    "save_edit": "jola_ray.editing.persist",
    "load_edit": "jola_ray.editing.persist",
    "EditFileError": "jola_ray.editing.persist",
    "find_head_sites": "jola_ray.editing.sites",
    "HeadSite": "jola_ray.editing.sites",
    "HeadEdit": "jola_ray.editing.base",
    "JoLAEdit": "jola_ray.editing.jola",
    "LoFiTEdit": "jola_ray.editing.lofit",
    "select_top_heads": "jola_ray.editing.lofit",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'jola_ray.editing' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
