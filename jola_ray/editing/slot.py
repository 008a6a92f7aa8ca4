"""The one slot an edit occupies on a model: ``model.head_edit``, with the base frozen.

Every edit kind (head edits, the hooked edits of RED/LoReFT/RepE/ITI, a trial pack) attaches
the same way: refuse a model that already carries an edit, remember and clear every
``requires_grad`` flag, move the edit to the model's device, register it as
``model.head_edit`` (so a HF/TRL Trainer finds and optimises its parameters and
``model.train()``/``model.eval()`` reach it) and keep a weak reference to the model. Detaching
undoes exactly that and removes the hooks the subclass registered in ``self._handles``.
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Iterator

import torch
from torch import nn

from jola_ray.errors import JolaRayError

EDIT_ATTRIBUTE = "head_edit"


class EditSlot(nn.Module):
    """Base of every edit module: ``_occupy`` the slot in ``attach``, ``remove`` to leave it."""

    def __init__(self) -> None:
        super().__init__()
        self._handles: list = []  # hook handles the subclass registers after ``_occupy``
        self._model_ref = None
        self._grad_flags: dict[str, bool] = {}

    def _occupy(self, model: nn.Module, device: torch.device | None, applying: str) -> None:
        """Freeze ``model``, move to ``device`` (None: stay) and register as its edit;
        ``applying`` words the refusal when the slot is taken ("another", "a pack")."""
        if EDIT_ATTRIBUTE in model._modules:
            raise JolaRayError(
                f"the model already carries an edit (`model.{EDIT_ATTRIBUTE}`); call its "
                f"remove() before applying {applying}"
            )
        self._grad_flags = {name: p.requires_grad for name, p in model.named_parameters()}
        model.requires_grad_(False)
        if device is not None:
            self.to(device)
        model.add_module(EDIT_ATTRIBUTE, self)  # after freezing: the edit's parameters train
        self.train(model.training)
        self._model_ref = weakref.ref(model)

    def remove(self) -> None:
        """Remove the hooks and ``model.head_edit``; restore every requires_grad flag."""
        for handle in self._handles:
            handle.remove()
        self._handles = []
        model = self._model_ref() if self._model_ref is not None else None
        if model is None:
            return
        if model._modules.get(EDIT_ATTRIBUTE) is self:
            del model._modules[EDIT_ATTRIBUTE]
        for name, param in model.named_parameters():
            if name in self._grad_flags:
                param.requires_grad_(self._grad_flags[name])
        self._model_ref = None


class SwitchableEdit(EditSlot):
    """An edit whose hooks honour ``disabled()`` (they check ``self._enabled`` and then leave
    the module's input or output alone): head edits and hooked edits. A trial pack is not one;
    it swaps in a single member (``solo``) instead."""

    def __init__(self) -> None:
        super().__init__()
        self._enabled = True

    @contextlib.contextmanager
    def disabled(self) -> Iterator[None]:
        """Run the model as if untouched (e.g. DPO reference log-probs); nests safely."""
        previous, self._enabled = self._enabled, False
        try:
            yield
        finally:
            self._enabled = previous
