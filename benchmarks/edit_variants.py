"""Faster ways to run the same JoLA edit, installed on an applied ``JoLAEdit`` for measurement.

Every variant computes exactly the library's edit, ``z' = (1 + g_m * m) * z + g_a * a`` with
Hard-Concrete gates sampled once per forward (training) or deterministic (eval); only the
kernel schedule differs, so the GPU session can pick the fastest and the library can adopt it:

* ``plain``: the library as it is: per layer, sample the two gates of that layer (a chain of
  small kernels), build the fp32 ``[H, d]`` scale and bias, cast them, one ``addcmul``.
* ``batched``: one pre-hook on the model samples the gates of *all* layers at once and builds
  every layer's scale and bias in a handful of kernels (``[L, H, d]``, cast once, ``unbind``);
  each ``o_proj`` hook only runs its ``addcmul``. Per layer: 1 kernel forward instead of ~12.
* ``fused``: ``batched`` plus a custom autograd Function for the per-layer ``z * s + b`` that
  saves only ``z`` and reduces the parameter gradients in fp32 in its backward.
* ``compiled``: ``torch.compile`` of one per-layer function (gate sampling, scale/bias,
  ``addcmul``) that takes the layer's parameter slices as tensors, so one graph serves every
  layer (no recompilation per layer index).

The variants need the library's default JoLA edit (all heads, both parts, one gate sample per
forward); ``install`` raises ``ValueError`` otherwise.
"""

from __future__ import annotations

import torch

VARIANTS = ("plain", "batched", "fused", "compiled")


def install(edit, model, variant: str):
    """Install ``variant`` on ``edit`` (a ``JoLAEdit`` attached to ``model``); return an undo
    callable that restores the library's behaviour (call it before ``edit.remove()``)."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown JoLA variant {variant!r}; known: {', '.join(VARIANTS)}")
    if variant == "plain":
        return lambda: None
    cfg = edit.config
    if not (edit._all_heads and cfg.parts == "both" and not cfg.per_example_gates):
        raise ValueError("JoLA variants need all heads, parts='both', per_example_gates=False")
    if variant == "compiled":
        return _install_compiled(edit)
    return _install_batched(edit, model, fused=variant == "fused")


def _all_layer_coefficients(edit, dtype: torch.dtype):
    """Scale and bias of every edited layer, ``[L, H, d]`` each, in ``dtype`` (one pass)."""
    from jola_ray.editing import gates

    if edit.training:
        g_mul = gates.sample_gates(edit.mul_log_alpha, None, edit.config.temperature)  # [L, H]
        g_add = gates.sample_gates(edit.add_log_alpha, None, edit.config.temperature)  # [L, H]
    else:
        g_mul = gates.eval_gates(edit.mul_log_alpha)
        g_add = gates.eval_gates(edit.add_log_alpha)
    scale = torch.addcmul(torch.ones_like(edit.mul_vector), g_mul.unsqueeze(-1), edit.mul_vector)
    bias = g_add.unsqueeze(-1) * edit.add_vector  # [L, H, 1] * [L, H, d] -> [L, H, d]
    return scale.to(dtype), bias.to(dtype)


class _ScaleShift(torch.autograd.Function):
    """``z * scale + bias`` with ``z`` (b, t, H, d) and ``scale``/``bias`` (H, d), all in the
    activation dtype; the backward reduces the parameter gradients over (b, t) in fp32."""

    @staticmethod
    def forward(ctx, z, scale, bias):
        ctx.save_for_backward(z, scale)
        return torch.addcmul(bias, z, scale)

    @staticmethod
    def backward(ctx, grad):
        z, scale = ctx.saved_tensors
        grad_z = grad * scale if ctx.needs_input_grad[0] else None
        grad_scale = grad_bias = None
        if ctx.needs_input_grad[1]:
            # (b, t, H, d) -> (H, d), accumulated in fp32
            grad_scale = (grad * z).sum(dim=(0, 1), dtype=torch.float32).to(scale.dtype)
        if ctx.needs_input_grad[2]:
            grad_bias = grad.sum(dim=(0, 1), dtype=torch.float32).to(scale.dtype)
        return grad_z, grad_scale, grad_bias


def _install_batched(edit, model, fused: bool):
    state: dict = {}
    dtype = next(p.dtype for p in model.parameters() if p.is_floating_point())

    def before_forward(module, args, kwargs):
        if not edit._enabled:
            return None
        scale, bias = _all_layer_coefficients(edit, dtype)
        state["scale"], state["bias"] = scale.unbind(0), bias.unbind(0)  # L x [H, d]
        return None

    def edit_heads(layer: int, z: torch.Tensor) -> torch.Tensor:
        slot = edit._slot[layer]
        scale, bias = state["scale"][slot], state["bias"][slot]
        if fused:
            return _ScaleShift.apply(z, scale, bias)
        return torch.addcmul(bias, z, scale)

    handle = model.register_forward_pre_hook(before_forward, with_kwargs=True)
    edit.edit_heads = edit_heads  # instance attribute: the o_proj hooks call it

    def undo() -> None:
        handle.remove()
        del edit.edit_heads
        state.clear()

    return undo


def _layer_edit(z, mul_la, mul_vec, add_la, add_vec, training: bool, temperature: float):
    """One layer's JoLA edit from its parameter slices (the function ``compiled`` compiles)."""
    from jola_ray.editing import gates

    if training:
        g_mul = gates.sample_gates(mul_la, None, temperature)
        g_add = gates.sample_gates(add_la, None, temperature)
    else:
        g_mul, g_add = gates.eval_gates(mul_la), gates.eval_gates(add_la)
    scale = 1 + g_mul.unsqueeze(-1) * mul_vec  # [H, d]
    bias = g_add.unsqueeze(-1) * add_vec  # [H, d]
    return torch.addcmul(bias.to(z.dtype), z, scale.to(z.dtype))


def _raise_recompile_limit(limit: int) -> None:
    import torch._dynamo.config as dynamo_config

    for name in ("recompile_limit", "cache_size_limit"):
        if hasattr(dynamo_config, name) and getattr(dynamo_config, name) < limit:
            setattr(dynamo_config, name, limit)


def _install_compiled(edit):
    _raise_recompile_limit(16)  # train and eval graphs, plus headroom
    compiled = torch.compile(_layer_edit, dynamic=False)
    temperature = float(edit.config.temperature)

    def edit_heads(layer: int, z: torch.Tensor) -> torch.Tensor:
        slot = edit._slot[layer]
        return compiled(
            z,
            edit.mul_log_alpha[slot],
            edit.mul_vector[slot],
            edit.add_log_alpha[slot],
            edit.add_vector[slot],
            edit.training,
            temperature,
        )

    edit.edit_heads = edit_heads

    def undo() -> None:
        del edit.edit_heads

    return undo
