"""LoRA (Hu et al., 2022) and DoRA through peft: low-rank adapters on the model's linear layers.

``W x + (alpha / r) * B A x`` on each targeted linear layer (``B = 0`` at init, so the model is
unchanged until the first step); ``lora.use_dora`` switches to DoRA's magnitude-direction form.
peft wraps the layers in place (``peft.tuners.lora.LoraModel`` on the model itself, not a
``PeftModel`` around it), so the run keeps the same model object; ``remove()`` unwraps them
(``unload``) and restores every ``requires_grad`` flag, leaving the model as it was.

Defaults: the JoLA paper's LoRA settings could not be read, so the defaults are LLM-Adapters'
commonsense recipe (Hu et al., EMNLP 2023, the ``finetune.py`` command of its README, also used
by DoRA's commonsense scripts): rank 32, alpha 64, dropout 0.05, targets ``q_proj k_proj v_proj
up_proj down_proj``, no bias; that recipe's learning rate 3e-4 is the first of the shipped
spaces' LoRA configurations.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

from jola_ray.methods.base import Method, Stage, StageContext
from jola_ray.methods.peft_handle import ADAPTER, PeftHandle, load_peft_file
from jola_ray.settings import setting

FORMAT = "jola_ray.lora/1"
DEFAULT_TARGETS = ["q_proj", "k_proj", "v_proj", "up_proj", "down_proj"]


@dataclass
class LoRASettings:
    r: int = setting(32, "adapter rank (LLM-Adapters commonsense: 32)", ge=1)
    alpha: float = setting(64.0, "scaling numerator: the update is (alpha / r) * B A", gt=0)
    dropout: float = setting(0.05, "dropout on the adapter's input", ge=0, lt=1)
    target_modules: list[str] = setting(
        DEFAULT_TARGETS,
        "names of the linear layers to adapt (module-name suffixes)",
        kind="str_list",
    )
    bias: str = setting(
        "none",
        "train biases too: none, lora_only (of adapted layers) or all",
        choices=("none", "lora_only", "all"),
    )
    use_dora: bool = setting(False, "DoRA: weight-decomposed LoRA (magnitude + direction)")


def _peft_config(cfg: LoRASettings):
    from peft import LoraConfig

    return LoraConfig(
        r=cfg.r,
        lora_alpha=cfg.alpha,
        lora_dropout=cfg.dropout,
        target_modules=list(cfg.target_modules),
        bias=cfg.bias,
        use_dora=cfg.use_dora,
    )


class LoRAHandle(PeftHandle):
    """A LoRA adapter injected into a model (``methods.base.Attached``)."""

    method = "lora"
    FORMAT = FORMAT

    def __init__(self, model, cfg: LoRASettings, seed: int | None):
        import torch
        from peft.tuners.lora import LoraModel

        from jola_ray.editing.persist import base_model_metadata
        from jola_ray.errors import UnsupportedModelError

        self.config = cfg
        self._model = model
        self._base_meta = base_model_metadata(model)  # before peft touches the model
        self._grad_flags = {n: p.requires_grad for n, p in model.named_parameters()}
        # biases a bias="lora_only"/"all" adapter trains are base tensors: keep their values
        self._bias_copy = {
            n: p.detach().clone() for n, p in model.named_parameters() if n.endswith(".bias")
        }
        model.requires_grad_(False)
        rng = torch.random.fork_rng(devices=[]) if seed is not None else contextlib.nullcontext()
        with rng:
            if seed is not None:
                torch.manual_seed(seed)
            try:
                self._tuner = LoraModel(model, _peft_config(cfg), ADAPTER)
            except ValueError as err:
                model.requires_grad_(False)
                self._restore_flags()
                model_type = getattr(getattr(model, "config", None), "model_type", "?")
                raise UnsupportedModelError(
                    f"lora: cannot adapt {model_type!r} model with target_modules "
                    f"{cfg.target_modules}: {err}"
                ) from None
        # the injected modules (dropout) are built in training mode: follow the model's mode
        model.train(model.training)
        # peft copies its config onto the model; the Trainer must see a plain model
        if "peft_config" in vars(model):
            del model.peft_config
        self._names = [n for n, p in model.named_parameters() if p.requires_grad]

    def remove(self) -> None:
        """Unwrap every adapted layer (peft ``unload``); restore flags and trained biases."""
        import torch

        if self._tuner is None:
            return
        self._tuner.unload()
        self._tuner = None
        params = dict(self._model.named_parameters())
        with torch.no_grad():
            for name, value in self._bias_copy.items():
                if name in params:
                    params[name].copy_(value)
        self._restore_flags()

    def inspect(self):
        """One row per adapted layer: its name, shape and the norm of ``B A`` (the update)."""
        import pandas as pd
        import torch

        rows = []
        with torch.no_grad():
            for name, module in self._model.named_modules():
                lora_a = getattr(module, "lora_A", None)
                if lora_a is None or ADAPTER not in lora_a:
                    continue
                a = lora_a[ADAPTER].weight
                b = module.lora_B[ADAPTER].weight
                rows.append(
                    {
                        "module": name,
                        "in_features": a.shape[1],
                        "out_features": b.shape[0],
                        "r": a.shape[0],
                        "update_norm": float((b.float() @ a.float()).norm()),
                    }
                )
        return pd.DataFrame(rows)


def _attach(ctx: StageContext) -> LoRAHandle:
    return LoRAHandle(ctx.model, ctx.config, ctx.seed)


def load(model, path: str | Path, *, any_model: bool = False) -> LoRAHandle:
    """Re-attach an adapter saved by ``LoRAHandle.save``; every tensor name and shape must fit,
    and the model must be the base model it was trained on (its class and config fingerprint,
    as for head edits; ``any_model=True`` skips that check)."""
    return load_peft_file(
        model,
        path,
        fmt=FORMAT,
        method="lora",
        label="LoRA",
        attach=lambda config: LoRAHandle(model, LoRASettings(**config), seed=0),
        tensors_word="adapter tensors",
        misfit_note=" (different layers or shapes)",
        any_model=any_model,
    )


def count(model, cfg: LoRASettings) -> int:
    """Trainable parameters on ``model`` (a real or meta-device one), from its module tree:
    ``r * (in + out)`` per adapted linear layer, ``+ out`` with DoRA's magnitude, plus the
    biases ``bias`` trains."""
    from torch import nn

    total = 0
    targets = tuple(cfg.target_modules)
    for name, module in model.named_modules():
        if not isinstance(module, nn.Linear) or name.split(".")[-1] not in targets:
            continue
        total += cfg.r * (module.in_features + module.out_features)
        if cfg.use_dora:
            total += module.out_features
        if cfg.bias == "lora_only" and module.bias is not None:
            total += module.bias.numel()
    if cfg.bias == "all":
        total += sum(p.numel() for n, p in model.named_parameters() if n.endswith(".bias"))
    return total


METHOD = Method(
    name="lora",
    config=LoRASettings,
    stages=lambda cfg: (Stage("main", _attach),),
    count=count,
    load=load,
    description="low-rank adapters (or DoRA) on linear layers, through peft",
)
