"""What the two peft-based methods (LoRA, BitFit) share: the ``Attached`` handle around a peft
tuner wrapped in place on the model, its save file, and re-attaching from that file.

peft injects the trainable tensors as parameters of the model itself; the handle remembers
their names (those left with ``requires_grad`` after freezing the base), so ``parameters()``,
``named_tensors()`` and ``save()`` are the same for every peft tuner, and so is the load check
(format, base-model fingerprint, then every tensor name and shape). Each method keeps its own
``__init__`` (how its tuner is built), ``remove()`` and ``inspect()``.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from jola_ray.settings import config_dict

ADAPTER = "default"


class PeftHandle:
    """Base of a peft-backed ``methods.base.Attached``: a subclass sets ``method``, ``FORMAT``,
    ``config``, ``_model``, ``_base_meta``, ``_grad_flags``, ``_tuner`` and ``_names``."""

    method = ""
    FORMAT = ""

    def named_tensors(self) -> dict[str, Any]:
        params = dict(self._model.named_parameters())
        return {n: params[n] for n in self._names}

    def parameters(self):
        return iter(self.named_tensors().values())

    def penalty(self, step: int, total_steps: int) -> None:
        return None

    def _restore_flags(self) -> None:
        for name, p in self._model.named_parameters():
            if name in self._grad_flags:
                p.requires_grad_(self._grad_flags[name])

    @contextlib.contextmanager
    def disabled(self):
        """The base model's forward (DPO's reference): adapters switched off, then back on."""
        self._tuner.disable_adapter_layers()
        try:
            yield
        finally:
            self._tuner.enable_adapter_layers()

    def summary(self) -> dict[str, Any]:
        return {}

    def epoch_metrics(self) -> dict[str, float]:
        return {}

    def save(self, path: str | Path) -> Path:
        """The tuner's tensors (by parameter name) and the metadata to re-attach them."""
        from jola_ray.editing.persist import write_file

        metadata = {
            "format": self.FORMAT,
            "method": self.method,
            "model_type": str(getattr(self._model.config, "model_type", "?")),
            "config": json.dumps(config_dict(self.config)),
            **self._base_meta,  # the base model it was trained on (refused on another)
        }
        return write_file(path, self.named_tensors(), metadata)


def load_peft_file(
    model,
    path: str | Path,
    *,
    fmt: str,
    method: str,
    label: str,
    attach: Callable[[dict[str, Any]], PeftHandle],
    tensors_word: str,
    misfit_note: str = "",
    any_model: bool = False,
) -> PeftHandle:
    """Re-attach a handle saved by ``PeftHandle.save``: the file's ``format`` must be ``fmt``
    (``label`` names the method in the message, ``method`` its module in the override hint),
    ``attach(config dict)`` builds the handle, every tensor name and shape must fit
    (``tensors_word`` and ``misfit_note`` word that message),
    and the model must be the base model they were trained on (class and config fingerprint;
    ``any_model=True`` skips that check; a refusal is reported after the shapes, the plainer
    fault)."""
    import torch
    from safetensors.torch import load_file

    from jola_ray.editing.persist import EditFileError, check_base_model, read_file_metadata

    meta = read_file_metadata(path)
    if meta.get("format") != fmt:
        raise EditFileError(
            f"{path} is not a jola-ray {label} file (format={meta.get('format')!r})"
        )
    refused = None  # checked on the bare model, before the tuner wraps it
    if not any_model:
        try:
            check_base_model(model, meta, Path(path), f"methods.{method}.load(..., any_model=True)")
        except EditFileError as err:
            refused = err
    handle = attach(json.loads(meta["config"]))
    tensors = load_file(str(path))
    own = handle.named_tensors()
    if set(own) != set(tensors) or any(own[k].shape != tensors[k].shape for k in own):
        handle.remove()
        raise EditFileError(
            f"{path} (saved for model type {meta.get('model_type')!r}) does not fit this model: "
            f"the file holds {len(tensors)} {tensors_word}, the model takes {len(own)}"
            + misfit_note
        )
    if refused is not None:
        handle.remove()
        raise refused
    with torch.no_grad():
        for name, p in own.items():
            p.copy_(tensors[name].to(device=p.device, dtype=p.dtype))
    return handle
