"""BitFit (Ben Zaken et al. 2022): train bias terms only, through peft's bias-only tuner (BEFT).

Llama-family models have no biases in their linear layers, so peft's ``BeftModel`` adds a
zero-initialised bias vector to each chosen linear layer (``W x + b0 + delta``, ``delta = 0`` at
init: the model is unchanged). For layers that already have a bias (Qwen2's q/k/v) the added
vector is a delta on it, the same as training that bias from its pretrained value while the
base tensor itself stays untouched (so detaching restores the model exactly). The chosen layers
are found generically per architecture (``jola_ray.editing.sites.find_linear_sites``): by
default every linear projection of every decoder layer, the attention and the MLP projections
(peft's own default for Llama is ``v_proj`` alone; BitFit trains every bias of the network, so
the default here covers the projections where a bias would sit). Settings are
``bitfit.<field>``.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

from jola_ray.methods.base import Method, Stage, StageContext
from jola_ray.methods.peft_handle import ADAPTER, PeftHandle, load_peft_file
from jola_ray.settings import setting

FORMAT = "jola_ray.bitfit/1"


@dataclass
class BitFitSettings:
    target_modules: list[str] | None = setting(
        None,
        "last names of the linear layers given a bias (None: every attention and MLP projection)",
        kind="str_list",
    )
    layers: list[int] | None = setting(
        None, "decoder layers whose projections are given a bias (None: all)", kind="int_list", ge=0
    )


def _sites(model, cfg: BitFitSettings):
    from jola_ray.editing.sites import find_linear_sites

    return find_linear_sites(model, cfg.target_modules, cfg.layers)


class BitFitHandle(PeftHandle):
    """Bias vectors injected by peft into the chosen linear layers (``methods.base.Attached``)."""

    method = "bitfit"
    FORMAT = FORMAT

    def __init__(self, model, cfg: BitFitSettings):
        from peft import BeftConfig
        from peft.tuners.beft import BeftModel

        from jola_ray.editing.persist import base_model_metadata

        self.config = cfg
        self._model = model
        self._base_meta = base_model_metadata(model)  # before peft touches the model
        sites = _sites(model, cfg)
        self._grad_flags = {n: p.requires_grad for n, p in model.named_parameters()}
        model.requires_grad_(False)
        try:
            with _quiet_no_bias_warning():
                self._tuner = BeftModel(
                    model, BeftConfig(target_modules=[s.path for s in sites]), ADAPTER
                )
        except (ValueError, TypeError) as err:  # peft: a layer type it cannot wrap (4-bit...)
            from jola_ray.editing.sites import model_type_of
            from jola_ray.errors import UnsupportedModelError

            self._restore_flags()
            raise UnsupportedModelError(
                f"bitfit: cannot add biases to {model_type_of(model)!r} model layers "
                f"{[s.name for s in sites[:3]]}...: {err}"
            ) from None
        if "peft_config" in vars(model):  # peft copies its config onto the model
            del model.peft_config
        self._names = [n for n, p in model.named_parameters() if p.requires_grad]
        # fp32 biases whatever the model's dtype, as every edit here (peft keeps the layer's
        # dtype; its forward adds the bias and casts the sum back to the layer's output dtype)
        for p in self.named_tensors().values():
            p.data = p.data.float()

    def remove(self) -> None:
        """Unwrap every layer (peft ``unload``: the added biases go) and restore the flags."""
        if self._tuner is None:
            return
        self._tuner.unload()
        self._tuner = None
        self._restore_flags()

    def inspect(self):
        """One row per biased layer: its name, width and the norm of the learned bias."""
        import pandas as pd

        return pd.DataFrame(
            [
                {
                    "module": n.removesuffix(f".beft_bias.{ADAPTER}"),
                    "out_features": p.shape[-1],
                    "bias_norm": float(p.detach().float().norm()),
                }
                for n, p in self.named_tensors().items()
            ]
        )


@contextlib.contextmanager
def _quiet_no_bias_warning():
    """peft warns once per bias-less layer that the delta cannot be merged; we never merge."""
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Detected that the base layer has no bias")
        yield


def _attach(ctx: StageContext) -> BitFitHandle:
    return BitFitHandle(ctx.model, ctx.config)


def count(model, cfg: BitFitSettings) -> int:
    """``out_features`` of every chosen linear layer."""
    return sum(s.out_features for s in _sites(model, cfg))


def load(model, path: str | Path, *, any_model: bool = False) -> BitFitHandle:
    """Re-attach biases saved by ``BitFitHandle.save``; every tensor name and shape must fit,
    and the model must be the base model they were trained on (class and config fingerprint;
    ``any_model=True`` skips that check)."""
    return load_peft_file(
        model,
        path,
        fmt=FORMAT,
        method="bitfit",
        label="BitFit",
        attach=lambda config: BitFitHandle(model, BitFitSettings(**config)),
        tensors_word="bias tensors",
        any_model=any_model,
    )


METHOD = Method(
    name="bitfit",
    config=BitFitSettings,
    stages=lambda cfg: (Stage("main", _attach),),
    count=count,
    load=load,
    description="bias terms only, zero-initialised where the model has none (peft BEFT)",
)
