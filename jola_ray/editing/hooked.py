"""The plumbing of the edits that hook sites other than the heads (RED, LoReFT, RepE, ITI).

A ``HookedEdit`` is an ``nn.Module`` holding a method's tensors. ``attach`` freezes the whole
base model (``lm_head`` included), registers the edit as ``model.head_edit`` (the one slot an
edit occupies, so a HF/TRL Trainer finds and optimises its parameters and
``model.train()``/``model.eval()`` reach it) and registers the subclass's hooks. ``remove``
undoes all of it: hooks off, the slot emptied, every ``requires_grad`` flag as it was. The edit
is the method plug-in's ``Attached`` handle (``jola_ray.methods.base``): ``parameters()``,
``penalty()``, ``remove()``, ``disabled()``, ``inspect()``, ``summary()``, ``epoch_metrics()``,
``save()``.

Files are safetensors: the edit's ``state_dict`` plus string metadata (format, method, model
type, the config as JSON, and the subclass's ``geometry()`` as JSON) from which ``load_hooked``
rebuilds the edit on a matching model.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from jola_ray.editing.sites import model_type_of
from jola_ray.editing.slot import SwitchableEdit
from jola_ray.settings import config_dict

FORMAT = "jola_ray.edit/1"


class HookedEdit(SwitchableEdit):
    """Base class: subclasses create their tensors in ``__init__`` and hooks in ``_hook``."""

    method: ClassVar[str] = ""

    def __init__(self, config: Any, model_type: str) -> None:
        super().__init__()
        self.config = config
        self.model_type = model_type

    # --- what a subclass implements -------------------------------------------------------
    def _hook(self, model: nn.Module) -> list:
        """Register the method's hooks on ``model``; return their handles."""
        raise NotImplementedError

    def geometry(self) -> dict[str, Any]:
        """JSON-safe facts a saved file must match on the model it is loaded into."""
        return {}

    # --- the Attached handle ---------------------------------------------------------------
    def attach(self, model: nn.Module) -> HookedEdit:
        device = next((p.device for p in model.parameters()), None)
        self._occupy(model, None if device is None or device.type == "meta" else device, "another")
        self._handles = list(self._hook(model))
        return self

    def penalty(self, step: int = 0, total_steps: int = 0) -> None:
        return None

    def inspect(self):
        return None

    def summary(self) -> dict[str, Any]:
        return {}

    def epoch_metrics(self) -> dict[str, float]:
        return {}

    def save(self, path: str | Path) -> Path:
        """Write the edit's tensors and metadata to ``path`` (a .safetensors file)."""
        from jola_ray.editing.persist import base_model_metadata, write_file

        metadata = {
            "format": FORMAT,
            "method": self.method,
            "model_type": self.model_type,
            "config": json.dumps(config_dict(self.config)),
            "geometry": json.dumps(self.geometry()),
        }
        model = self._model_ref() if self._model_ref is not None else None
        if model is not None:  # the base model it is attached to (refused on another)
            metadata.update(base_model_metadata(model))
        return write_file(path, self.state_dict(), metadata)


class LayerOutputEdit(HookedEdit):
    """A ``HookedEdit`` that rewrites the hidden states one module per edited layer outputs
    (``self._sites``: ``LayerSite``s, row ``i`` of the edit's tensors for ``self._sites[i]``).
    Subclasses implement ``edit_hidden``; the forward hooks and the ``disabled()`` switch are
    here (RED on the FFN output, RepE on the residual stream)."""

    _sites: list

    def edit_hidden(self, row: int, h: torch.Tensor) -> torch.Tensor:
        """``h`` (batch, seq, hidden) as edited by row ``row``, in ``h``'s dtype."""
        raise NotImplementedError

    def _hook(self, model: nn.Module) -> list:
        return [
            site.module.register_forward_hook(partial(self._forward_hook, row))
            for row, site in enumerate(self._sites)
        ]

    def _forward_hook(self, row: int, module, args, output):
        if not self._enabled:
            return None
        return replace_output(output, self.edit_hidden(row, output_tensor(output)))


def read_metadata(path: str | Path, method: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(config dict, geometry dict)`` of a file saved by a ``HookedEdit`` of ``method``."""
    from jola_ray.editing.persist import EditFileError, read_file_metadata

    meta = read_file_metadata(path)
    if meta.get("format") != FORMAT or meta.get("method") != method:
        raise EditFileError(
            f"{path} is not a jola-ray {method} edit file (format={meta.get('format')!r}, "
            f"method={meta.get('method')!r})"
        )
    return json.loads(meta["config"]), json.loads(meta["geometry"])


def load_hooked(
    model: nn.Module,
    path: str | Path,
    method: str,
    settings: Callable[..., Any],
    build: Callable[[Any], HookedEdit],
) -> HookedEdit:
    """Re-attach a ``HookedEdit`` of ``method`` saved in ``path``: its config is rebuilt as
    ``settings(**saved)``, ``build(config)`` makes the (unattached) edit for ``model``, whose
    geometry and base model must match the file's; then its tensors are loaded and it is
    attached. Each method's ``load`` is this call with its own settings and builder."""
    from jola_ray.editing.persist import load_state

    config, geometry = read_metadata(path, method)
    edit = build(settings(**config))
    check_geometry(path, geometry, model, edit.geometry())
    return load_state(edit, path).attach(model)


def check_geometry(
    path: str | Path,
    saved: dict[str, Any],
    model: nn.Module,
    actual: dict,
    *,
    any_model: bool = False,
) -> None:
    """``EditFileError`` naming every field where a file's geometry differs from the model's,
    or when the file was trained on another base model (its ``architecture`` and
    ``base_fingerprint``; ``any_model=True`` skips that check)."""
    from jola_ray.editing.persist import EditFileError, check_base_model, read_file_metadata

    mismatches = [
        f"{k}: file {saved.get(k)!r}, model {v!r}" for k, v in actual.items() if saved.get(k) != v
    ]
    if mismatches:
        raise EditFileError(
            f"edit file {path} does not fit this {model_type_of(model)!r} model: "
            + "; ".join(mismatches)
        )
    if not any_model:
        check_base_model(
            model,
            read_file_metadata(path),
            Path(path),
            "jola_ray.editing.hooked.check_geometry(..., any_model=True)",
        )


def output_tensor(output):
    """The hidden states of a module's output (a tensor, or the first item of a tuple)."""
    return output[0] if isinstance(output, tuple) else output


def replace_output(output, hidden: torch.Tensor):
    """``output`` with its hidden states replaced by ``hidden`` (same container type)."""
    if isinstance(output, tuple):
        return (hidden, *output[1:])
    return hidden
