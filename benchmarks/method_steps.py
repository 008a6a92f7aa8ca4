"""Training-step time of every trained method in the registry, beside the frozen-model floor.

The JoLA paper compares its method with LoRA, BitFit, RED and ReFT under one protocol; this
section times each of them the way ``train_step`` times JoLA: the same model, the same random
``batch x seq_len`` batch, forward + the method's penalty + backward + AdamW on the method's
own parameters, the mean of ``steps`` steps after ``warmup``. Each method is attached through
its registry entry (its first training stage, default settings), so what is timed is the
library's own edit, not a copy. Inference-time methods (no training stage) are left out.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from benchmarks.shapes import Shape, random_batch
from benchmarks.train_step import floor_step, time_steps


def _method_step(model, batch: dict, handle, lr: float = 1e-3) -> Callable[[], None]:
    """One optimizer step of an attached method: loss (+ penalty) backward, AdamW."""
    params = [p for p in handle.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr)

    def step() -> None:
        loss = model(**batch).loss
        penalty = handle.penalty(0, 1)
        if penalty is not None:
            loss = loss + penalty
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def trained_methods() -> list[str]:
    """Registry names whose recipe has at least one training stage."""
    from jola_ray.methods import registry

    out = []
    for method in registry.all_methods():
        cfg, problems = method.build_config({})
        if problems:
            continue
        if any(stage.kind == "train" for stage in method.stages(cfg)):
            out.append(method.name)
    return out


def measure_method(model, batch: dict, name: str, device: str, warmup: int, steps: int) -> dict:
    """Attach ``name`` (first training stage, default settings), time its step, detach."""
    from jola_ray.methods import registry
    from jola_ray.methods.base import StageContext

    method = registry.get(name)
    cfg, _ = method.build_config({})
    stage = next(s for s in method.stages(cfg) if s.kind == "train")
    handle = stage.attach(StageContext(model=model, config=cfg, seed=0, carry={}))
    model.train()
    try:
        result = time_steps(_method_step(model, batch, handle), device, warmup, steps)
        result["trainable_params"] = sum(p.numel() for p in handle.parameters())
        result["stage"] = stage.name
        return result
    finally:
        handle.remove()
        model.eval()


def run(model, shape: Shape, device: str, warmup: int, steps: int) -> dict:
    """``methods_floor_ms`` and ``method_steps``: name -> ms, over_floor, peak_gb, params (or
    error: a method that cannot run on this model is reported, not fatal)."""
    batch = random_batch(shape, model.config.vocab_size, device)
    model.train()
    try:
        floor = time_steps(floor_step(model, batch), device, warmup, steps)
    finally:
        model.eval()
    results: dict[str, dict] = {}
    for name in trained_methods():
        try:
            res = measure_method(model, batch, name, device, warmup, steps)
        except Exception as err:
            results[name] = {"error": f"{type(err).__name__}: {err}"[:500]}
            continue
        res["over_floor"] = res["ms"] / floor["ms"]
        results[name] = res
    return {"methods_floor_ms": floor["ms"], "method_steps": results}
