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
    start, cpu_start = time.perf_counter(), time.process_time()
    for _ in range(steps):
        step()
    sync(device)
    elapsed = time.perf_counter() - start
    cpu = time.process_time() - cpu_start
    # cpu_ms: this process's CPU time, which other jobs on a shared machine do not inflate
    # (with one torch thread it is the step's work); on a GPU, ms is the figure
    return {
        "ms": 1000.0 * elapsed / steps,
        "cpu_ms": 1000.0 * cpu / steps,
        "peak_gb": peak_gb(device),
    }


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


# --- the step a trial runs: real prompts, answer-only labels, the trainer's own loss --------


def real_batch(tokenizer, batch_size: int, task: str = "demo_vowel"):
    """(TRL dataset, collated batch): ``batch_size`` training examples of ``task`` as a trial
    builds them (``jola_ray.train.trl_data.sft_dataset``: labels on the answer tokens only)."""
    from jola_ray.data.demo import demo_pools
    from jola_ray.train.trl_data import sft_dataset

    examples = demo_pools(task).train[:batch_size]
    return sft_dataset(examples, tokenizer)


def _sft_trainer(model, tokenizer, dataset, out_dir: str, device: str):
    """The library's SFT trainer class over ``model`` with a trial's arguments (edit-only)."""
    from trl import SFTConfig

    from jola_ray.train.trainer import make_trainer_class

    args = SFTConfig(
        output_dir=out_dir,
        per_device_train_batch_size=len(dataset),
        learning_rate=1e-3,
        optim="adamw_torch",
        report_to="none",
        bf16=False,
        fp16=False,
        activation_checkpointing=False,
        use_cpu=not device.startswith("cuda"),
        disable_tqdm=True,
        max_length=400,
        packing=False,
        completion_only_loss=True,
        save_strategy="no",
    )
    cls = make_trainer_class("sft")
    return cls(model=model, args=args, train_dataset=dataset, processing_class=tokenizer)


def trainer_step(trainer, model, batch: dict, edit, lr: float = 1e-3) -> Callable[[], None]:
    """One optimizer step through the trainer's own ``compute_loss`` (the loss a trial trains
    on, penalty included) + backward + AdamW on the edit's parameters."""
    optimizer = torch.optim.AdamW(list(edit.parameters()), lr=lr)
    n_items = int((batch["labels"][:, 1:] != -100).sum())
    trainer.penalty_fn = lambda step: edit.penalty()
    trainer.current_gradient_accumulation_steps = 1  # set by train() in a real run

    def step() -> None:
        loss = trainer.compute_loss(model, dict(batch), num_items_in_batch=n_items)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def answer_floor_step(model, batch: dict) -> Callable[[], None]:
    """The floor on a real batch: frozen forward + backward to the input embeddings, with the
    batch's attention mask and answer-only labels (the plain HF loss)."""
    embed = model.get_input_embeddings()

    def step() -> None:
        with torch.no_grad():
            embeds = embed(batch["input_ids"])  # (b, t, hidden)
        embeds.requires_grad_(True)
        out = model(
            inputs_embeds=embeds, attention_mask=batch["attention_mask"], labels=batch["labels"]
        )
        out.loss.backward()

    return step


def run_trainer_step(
    model, tokenizer, device: str, warmup: int, steps: int, repeats: int = 1, batch_size: int = 8
) -> dict:
    """The training step a trial runs, against the bare step and the floor on the same batch.

    The batch is ``batch_size`` demo training examples collated by the trainer's own collator
    (labels on the answer tokens only). Three steps, interleaved over ``repeats`` rounds (median):

    * ``answer_floor``: the frozen model, forward + backward to the input embeddings;
    * ``bare``: the JoLA-edited model's plain HF loss + penalty, backward, AdamW;
    * ``trainer``: the same through ``EditSFTTrainer.compute_loss`` (what ``trainer.train``
      calls every step), backward, AdamW.

    ``trainer_over_bare`` is the target figure (at most 1.05).
    """
    import tempfile

    from jola_ray.editing import JoLAConfig, apply_edit

    dataset = real_batch(tokenizer, batch_size)
    edit = apply_edit(model, JoLAConfig(seed=0))
    edit_params = list(edit.parameters())
    samples: dict[str, list[dict]] = {"answer_floor": [], "bare": [], "trainer": []}
    with tempfile.TemporaryDirectory(prefix="jola-bench-step-") as tmp:
        trainer = _sft_trainer(model, tokenizer, dataset, tmp, device)
        collated = trainer.data_collator([dataset[i] for i in range(len(dataset))])
        batch = {k: v.to(device) for k, v in collated.items() if torch.is_tensor(v)}
        try:
            model.train()
            for _ in range(repeats):
                with edit.disabled():
                    for p in edit_params:
                        p.requires_grad_(False)
                    try:
                        samples["answer_floor"].append(
                            time_steps(answer_floor_step(model, batch), device, warmup, steps)
                        )
                    finally:
                        for p in edit_params:
                            p.requires_grad_(True)
                plain = {k: v for k, v in batch.items()}
                samples["bare"].append(
                    time_steps(edit_step(model, plain, edit), device, warmup, steps)
                )
                samples["trainer"].append(
                    time_steps(trainer_step(trainer, model, batch, edit), device, warmup, steps)
                )
        finally:
            model.eval()
            edit.remove()
            model.__dict__.pop("forward", None)  # TRL patched the instance's forward
    res = {k: _median_of_rounds(v) for k, v in samples.items()}
    if not device.startswith("cuda"):  # CPU time: robust on a shared machine
        for k, v in samples.items():
            res[k]["ms"] = statistics.median(r["cpu_ms"] for r in v)
            res[k]["rounds_ms"] = [r["cpu_ms"] for r in v]
    return {
        "step_clock": "wall" if device.startswith("cuda") else "process CPU time",
        "step_batch": list(batch["input_ids"].shape),
        "step_answer_tokens": int((batch["labels"] != -100).sum()),
        "answer_floor_ms": res["answer_floor"]["ms"],
        "bare_step_ms": res["bare"]["ms"],
        "trainer_step_ms": res["trainer"]["ms"],
        "trainer_over_bare": res["trainer"]["ms"] / res["bare"]["ms"],
        "bare_over_answer_floor": res["bare"]["ms"] / res["answer_floor"]["ms"],
        "trainer_step_rounds_ms": {k: v.get("rounds_ms", [v["ms"]]) for k, v in res.items()},
    }


def main(argv: list[str] | None = None) -> int:
    """``python -m benchmarks.train_step --shape cpu-small``: the trial's step, printed."""
    import argparse
    import json

    from benchmarks.shapes import build_model, get_shape

    p = argparse.ArgumentParser(prog="python -m benchmarks.train_step")
    p.add_argument("--shape", default="cpu-small")
    p.add_argument("--device", default="cpu")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    if args.device == "cpu":
        torch.set_num_threads(args.threads)
    model, tok = build_model(get_shape(args.shape), args.device)
    res = run_trainer_step(model, tok, args.device, args.warmup, args.steps, args.repeats)
    print(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
