"""Training-step time of the JoLA and LoFiT edits against the frozen-model floor.

Definitions (``shared/reference/perf-anchors.md``): one step is a batch of ``batch x seq_len``
random tokens, forward + backward + AdamW on the edit's parameters only; the figure is the mean
of ``steps`` steps after ``warmup`` warm-up steps (one device sync before and after the timed
steps, none in between). The floor is the frozen model's forward + backward down to the input
embeddings with no weight gradient at all (SDPA): what any head-editing method must pay for
backpropagating through the model. Everything is measured on one model in one process.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch

from benchmarks import edit_variants
from benchmarks.shapes import Shape, random_batch


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def reset_peak(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def peak_gb(device: str) -> float:
    """Peak memory since ``reset_peak``: allocated GPU memory, or the process's max RSS on a CPU
    (which never goes down, so CPU figures are an upper bound of the whole run so far)."""
    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 2**30
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB -> GiB


def time_steps(step: Callable[[], None], device: str, warmup: int, steps: int) -> dict:
    """Mean ms per ``step()`` over ``steps`` after ``warmup``, and the peak memory."""
    reset_peak(device)
    for _ in range(warmup):
        step()
    sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    sync(device)
    elapsed = time.perf_counter() - start
    return {"ms": 1000.0 * elapsed / steps, "peak_gb": peak_gb(device)}


def floor_step(model, batch: dict) -> Callable[[], None]:
    """Frozen model, forward + backward to the input embeddings, no weight gradients."""
    model.requires_grad_(False)
    embed = model.get_input_embeddings()
    labels = batch["labels"]

    def step() -> None:
        with torch.no_grad():
            embeds = embed(batch["input_ids"])  # (b, t, hidden)
        embeds.requires_grad_(True)
        loss = model(inputs_embeds=embeds, labels=labels).loss
        loss.backward()

    return step


def edit_step(model, batch: dict, edit, lr: float = 1e-3) -> Callable[[], None]:
    """Edited model: forward + penalty + backward + AdamW on the edit's parameters only."""
    optimizer = torch.optim.AdamW(list(edit.parameters()), lr=lr)

    def step() -> None:
        loss = model(**batch).loss + edit.penalty()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def measure_edit(model, batch, config, device, warmup, steps, variant="plain") -> dict:
    """Apply ``config``'s edit (with a JoLA ``variant``), time its training step, remove it."""
    from jola_ray.editing import apply_edit

    edit = apply_edit(model, config)
    model.train()
    undo = edit_variants.install(edit, model, variant)
    try:
        result = time_steps(edit_step(model, batch, edit), device, warmup, steps)
        result["trainable_params"] = sum(p.numel() for p in edit.parameters())
        return result
    finally:
        undo()
        edit.remove()
        model.eval()


def _median_of_rounds(samples: list[dict]) -> dict:
    """One figure from the rounds: the median ms (robust to a noisy round), the largest peak."""
    out = dict(samples[0])
    out["ms"] = statistics.median(r["ms"] for r in samples)
    out["peak_gb"] = max(r["peak_gb"] for r in samples)
    if len(samples) > 1:
        out["rounds_ms"] = [r["ms"] for r in samples]
    return out


def run(
    model,
    shape: Shape,
    device: str,
    warmup: int,
    steps: int,
    variants: list[str],
    repeats: int = 1,
) -> dict:
    """Floor, JoLA (every variant in ``variants``) and LoFiT stage 1 on ``model``.

    With ``repeats`` > 1 the whole sequence runs that many rounds (interleaved, so a slow
    spell of a shared machine hits every configuration alike) and each figure is the median
    of its rounds. Returns the shape's training keys: ``floor_ms``, ``jola_ms`` (the library's
    plain hook), ``jola_over_floor``, ``lofit_ms``, ``lofit_over_floor``, ``peak_gb``
    (JoLA's), ``floor_peak_gb``, and ``jola_variants`` (variant -> ms, over_floor, peak_gb,
    or error).
    """
    from jola_ray.editing import JoLAConfig, LoFiTConfig

    batch = random_batch(shape, model.config.vocab_size, device)
    jola = JoLAConfig(seed=0)
    lofit_cfg = LoFiTConfig(stage="scale", seed=0)
    names = ["floor", *(f"jola:{v}" for v in variants if v != "plain"), "jola:plain", "lofit"]
    samples: dict[str, list[dict]] = {name: [] for name in names}
    errors: dict[str, str] = {}
    for _ in range(repeats):
        for name in names:
            if name in errors:
                continue
            try:
                if name == "floor":
                    model.train()
                    try:
                        res = time_steps(floor_step(model, batch), device, warmup, steps)
                    finally:
                        model.eval()
                elif name == "lofit":
                    res = measure_edit(model, batch, lofit_cfg, device, warmup, steps)
                else:
                    variant = name.split(":", 1)[1]
                    res = measure_edit(model, batch, jola, device, warmup, steps, variant)
            except Exception as err:  # a variant that cannot run here is reported, not fatal
                if name in ("floor", "lofit", "jola:plain"):
                    raise
                errors[name] = f"{type(err).__name__}: {err}"[:500]
                continue
            samples[name].append(res)
    floor = _median_of_rounds(samples["floor"])
    lofit = _median_of_rounds(samples["lofit"])
    variant_results: dict[str, dict] = {}
    for variant in variants:
        name = f"jola:{variant}"
        if name in errors:
            variant_results[variant] = {"error": errors[name]}
            continue
        res = _median_of_rounds(samples[name])
        res["over_floor"] = res["ms"] / floor["ms"]
        variant_results[variant] = res
    plain = variant_results.get("plain") or _median_of_rounds(samples["jola:plain"])
    plain["over_floor"] = plain["ms"] / floor["ms"]
    timed = {k: v for k, v in variant_results.items() if "ms" in v}
    best = min(timed, key=lambda k: timed[k]["ms"]) if timed else "plain"
    best_ms = timed[best]["ms"] if timed else plain["ms"]
    return {
        "floor_ms": floor["ms"],
        "floor_peak_gb": floor["peak_gb"],
        "jola_ms": plain["ms"],
        "jola_over_floor": plain["over_floor"],
        "jola_trainable_params": plain["trainable_params"],
        "peak_gb": plain["peak_gb"],
        "lofit_ms": lofit["ms"],
        "lofit_over_floor": lofit["ms"] / floor["ms"],
        "lofit_peak_gb": lofit["peak_gb"],
        "jola_variants": variant_results,
        "jola_best_variant": best,
        "jola_best_ms": best_ms,
        "jola_best_over_floor": best_ms / floor["ms"],
        "train_rounds": repeats,
    }
