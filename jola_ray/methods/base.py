"""The method interface: what one method module declares so that the rest of jola-ray can run it.

A method module (``jola_ray/methods/<name>.py``) defines ``METHOD = Method(...)`` and is listed
once in ``registry.py``. Nothing else in the library names a method. The module must import
without torch (heavy imports inside functions): the CLI and the sweep read ``Method.config``
at start.

- ``config``: a dataclass whose fields are declared with ``jola_ray.settings.setting`` (help,
  kind, choices, bounds). Its fields are the method's settings under its name: field
  ``temperature`` of method ``jola`` is ``jola.temperature`` in YAML (nested ``jola:
  {temperature: ...}`` or dotted), on the CLI (``--jola.temperature``), in Ray's trial config
  and in the trials table. Shared training settings (lr, epochs, ...) stay in ``RunConfig``.
- ``stages(cfg)``: the recipe, a tuple of ``Stage`` (JoLA one, LoFiT two, zero-shot none; an
  inference-time method one stage of ``kind="build"``). The runner trains (or builds) each
  stage in order; the last stage's epochs are the ones reported.
- ``count(model, cfg)``: the trainable parameters of the last stage, on a real or meta-device
  model (``torch.device("meta")``: no memory); an int, or a dict with ``trainable_params``
  and other figures ``jola-ray params`` prints (LoFiT: ``stage1_params``, ``top_k``).
- ``load(model, path)``: re-attach a handle saved with ``Attached.save`` (the file holds the
  tensors and the metadata needed: format, method, config as JSON, geometry).

An attached method is an ``Attached`` handle (a protocol; any object with these members):
``parameters()`` (the only tensors that train), ``penalty(step, total_steps)`` (the weighted
regulariser or None), ``remove()`` (exact detach: the model is the base model again, every
``requires_grad`` flag restored), ``disabled()`` (a context in which the forward is the base
model's, for DPO's reference), ``inspect()`` (a pandas table or None), ``summary()`` (extra
final metrics, e.g. ``num_selected_heads``), ``epoch_metrics()`` (per-epoch extras, e.g.
``open_gate_fraction``) and ``save(path)``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from jola_ray import settings


@runtime_checkable
class Attached(Protocol):
    """A method attached to a frozen model (see the module docstring)."""

    method: str

    def parameters(self) -> Iterable[Any]: ...  # torch.nn.Parameter, requires_grad=True

    def penalty(self, step: int, total_steps: int) -> Any: ...  # torch.Tensor or None

    def remove(self) -> None: ...

    def disabled(self) -> Any: ...  # a context manager

    def inspect(self) -> Any: ...  # pandas.DataFrame or None

    def summary(self) -> dict[str, Any]: ...

    def epoch_metrics(self) -> dict[str, float]: ...

    def save(self, path: str | Path) -> Path: ...


@dataclass
class StageContext:
    """What a stage's ``attach`` gets: the frozen model, the method's config, the run's seed,
    what earlier stages handed on (``carry``, JSON-safe: it travels in checkpoints), and for
    ``build`` stages the training examples and tokenizer."""

    model: Any
    config: Any
    seed: int
    carry: dict[str, Any]
    train_examples: list | None = None
    tokenizer: Any = None


@dataclass(frozen=True)
class Stage:
    """One step of a method's recipe.

    Attributes:
        name: the stage's name in checkpoints and ``RunState`` ("main", "stage1", ...).
        attach: ``StageContext -> Attached``.
        kind: ``"train"`` (TRL training with the run's schedule, early stopping and
            checkpoints) or ``"build"`` (``attach`` computes the edit from the training data; no
            optimizer; dev/test are evaluated once).
        lr: this stage's learning rate from the method config (None: the run's ``lr``).
        finish: called on the stage's best-epoch handle before the next stage; returns what
            later stages need (``carry``) and the stage's summary metrics; the runner then
            removes the handle. Unused on the last stage.
        prefix: the prefix of this stage's metrics when it is not the last (``s1_``).
    """

    name: str
    attach: Callable[[StageContext], Attached]
    kind: str = "train"
    lr: Callable[[Any], float | None] | None = None
    finish: Callable[[Attached], dict[str, Any]] | None = None
    prefix: str = ""


@dataclass(frozen=True)
class Method:
    """One method's declaration (``METHOD`` in its module)."""

    name: str
    config: type  # a dataclass of ``settings.setting`` fields
    stages: Callable[[Any], tuple[Stage, ...]]
    count: Callable[[Any, Any], Any] | None = None  # (model, cfg) -> int or dict (see above)
    load: Callable[[Any, str | Path], Attached] | None = None
    description: str = ""
    # True when every stage's handle is a head edit with ``layer_factors`` (``handle.edit``):
    # the group's configurations can then train in one trial pack (``jola_ray.train.pack``).
    packs: bool = False
    # For a method that packs: (its settings) -> why this configuration runs unpacked all the
    # same (e.g. JoLA at another site than the heads), or None when it packs.
    unpacked: Callable[[Any], str | None] | None = None

    def unpacked_reason(self, cfg: Any) -> str | None:
        """Why a configuration with settings ``cfg`` trains unpacked (None: it packs)."""
        if not self.packs:
            return f"method {self.name!r} runs unpacked (its edit does not pack)"
        return self.unpacked(cfg) if self.unpacked is not None else None

    def fields(self) -> dict[str, dataclasses.Field]:
        """The config's fields by bare name (``temperature``)."""
        return {f.name: f for f in dataclasses.fields(self.config)}

    def build_config(self, raw: dict[str, Any], where: str = "") -> tuple[Any, list[str]]:
        """``(config, problems)`` from bare-name values (unset: defaults); config None on
        problems. ``where`` prefixes messages (``jola.``)."""
        values, problems = settings.check_fields(self.fields(), raw, where or f"{self.name}.")
        if problems:
            return None, problems
        return self.config(**values), []


class NoEdit:
    """The ``Attached`` of a method that changes nothing (zero-shot's evaluation handle)."""

    method = "none"

    def parameters(self) -> Iterator[Any]:
        return iter(())

    def penalty(self, step: int, total_steps: int) -> None:
        return None

    def remove(self) -> None:
        return None

    def disabled(self):
        import contextlib

        return contextlib.nullcontext()

    def inspect(self) -> None:
        return None

    def summary(self) -> dict[str, Any]:
        return {}

    def epoch_metrics(self) -> dict[str, float]:
        return {}

    def save(self, path: str | Path) -> Path:
        raise NotImplementedError("a method without parameters has nothing to save")
