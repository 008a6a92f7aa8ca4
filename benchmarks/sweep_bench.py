"""A sweep itself: trials per device-hour with 1, 2 and 4 trials per device, and Ray's fixed
overhead per trial.

The sweep is the library's own ``jola_ray.sweep.run_sweep`` (its trainable, grid search, FIFO
scheduler, checkpoints through ``tune.report``) on a small grid (``configs`` x ``seeds``), with
the run function swapped (the sweep layer's documented injection point) for a benchmark run:
build the shape with random weights on the trial's device, apply the JoLA edit, run
``steps_per_epoch`` training steps per epoch and report each epoch with an edit-only
checkpoint. Fractional resources pack trials: ``{"gpu": 1/n}`` on a GPU, ``{"cpu": 1/n}`` on
a Ray started with one CPU when measuring on a CPU.

Ray's fixed overhead per trial: the same grid with a run function that reports once and
returns at once, one trial at a time; its ``Tuner.fit`` wall time divided by the trials.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import torch

REPO_ROOT = Path(__file__).resolve().parent.parent


def make_config(flat: dict) -> dict:
    """The benchmark's run config is the trial's flat dict itself."""
    return dict(flat)


def bench_run(cfg: dict, report=None, resume_from=None) -> dict:
    """One benchmark trial (runs in a Ray worker): build, edit, train, report every epoch."""
    from benchmarks.shapes import build_model, get_shape, random_batch
    from benchmarks.train_step import edit_step, sync
    from jola_ray.editing import JoLAConfig, apply_edit, save_edit

    device = "cuda" if torch.cuda.is_available() and cfg.get("device") == "cuda" else "cpu"
    if device == "cpu":
        torch.set_num_threads(1)
    elif cfg.get("gpu_memory_fraction", 1.0) < 1.0:
        torch.cuda.set_per_process_memory_fraction(float(cfg["gpu_memory_fraction"]))
    shape = get_shape(cfg["model"])
    if cfg.get("batch_size"):
        from dataclasses import replace

        shape = replace(shape, batch_size=int(cfg["batch_size"]), seq_len=int(cfg["seq_len"]))
    model, _ = build_model(shape, device, seed=int(cfg["seed"]))
    edit = apply_edit(model, JoLAConfig(seed=int(cfg["seed"])))
    model.train()
    step = edit_step(model, random_batch(shape, model.config.vocab_size, device), edit)
    epochs = int(cfg["epochs"])
    metrics: dict = {}
    for epoch in range(1, epochs + 1):
        for _ in range(int(cfg["steps_per_epoch"])):
            step()
        sync(device)
        with tempfile.TemporaryDirectory(prefix="bench-ckpt-") as ckpt:
            save_edit(edit, os.path.join(ckpt, "edit.safetensors"))
            metrics = {
                "epoch": epoch,
                "step": epoch * int(cfg["steps_per_epoch"]),
                "dev_score": float(epoch),
                "run_status": "finished" if epoch == epochs else "running",
            }
            if report is not None:
                report(metrics, ckpt)
    return metrics


def noop_run(cfg: dict, report=None, resume_from=None) -> dict:
    """A trial that does nothing: one final report, no checkpoint."""
    metrics = {"epoch": 1, "dev_score": 0.0, "run_status": "finished"}
    if report is not None:
        report(metrics, None)
    return metrics


def _space(name: str, shape: str, device: str, configs: int, seeds: int, fixed: dict, resources):
    from jola_ray.sweep.space import parse_space

    raw = {
        "name": name,
        "tasks": ["bench"],
        "seeds": list(range(seeds)),
        "models": [shape],
        "methods": ["jola"],
        "configs": [{"name": f"c{i + 1}", "lr": 1e-3 * (i + 1)} for i in range(configs)],
        "fixed": {"device": device, **fixed},
        "scheduler": {"type": "fifo"},
        "resources": resources,
        "max_failures": 0,
    }
    return parse_space(raw, "<benchmarks.sweep_bench>", check_registry=False)


def _fit(space, storage: str, run_fn: str, max_concurrent: int | None = None) -> dict:
    from dataclasses import replace

    from jola_ray.sweep import run_sweep

    if max_concurrent is not None:
        space = replace(space, max_concurrent_trials=max_concurrent)
    outcome = run_sweep(
        space,
        storage_path=storage,
        run_fn=run_fn,
        make_config="benchmarks.sweep_bench.make_config",
        say=lambda s: None,
    )
    return {"wall_s": outcome.wall_s, "counts": outcome.counts()}


def run(
    shape: str,
    device: str,
    levels: list[int],
    configs: int = 4,
    seeds: int = 2,
    epochs: int = 3,
    steps_per_epoch: int = 25,
    batch: tuple[int, int] | None = None,
) -> dict:
    """Trials per device-hour per packing level, and Ray's fixed overhead per trial."""
    import ray

    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    # Workers import benchmarks.* from the repository (Tune moves them into trial dirs).
    paths = [str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
    on_gpu = device.startswith("cuda")
    t0 = time.perf_counter()
    # address="local": always a fresh cluster of our own, never one already running here.
    common = dict(address="local", include_dashboard=False, logging_level="WARNING")
    if on_gpu:
        ray.init(num_gpus=1, object_store_memory=512 << 20, **common)
    else:
        # One "device": a single CPU shared out in fractions, like one GPU.
        ray.init(num_cpus=1, num_gpus=0, object_store_memory=256 << 20, **common)
    ray_init_s = time.perf_counter() - t0
    fixed = {"epochs": epochs, "steps_per_epoch": steps_per_epoch}
    if batch is not None:
        fixed.update(batch_size=batch[0], seq_len=batch[1])
    per_level: dict[str, dict] = {}
    try:
        with tempfile.TemporaryDirectory(prefix="jola-bench-sweep-") as storage:
            for n in levels:
                resources = {"cpu": 1, "gpu": 1 / n} if on_gpu else {"cpu": 1 / n, "gpu": 0}
                space = _space(f"pack{n}", shape, device, configs, seeds, fixed, resources)
                try:
                    res = _fit(space, storage, "benchmarks.sweep_bench.bench_run")
                except Exception as err:
                    per_level[str(n)] = {"error": f"{type(err).__name__}: {err}"[:300]}
                    continue
                trials = configs * seeds
                res["trials"] = trials
                res["trials_per_device_hour"] = 3600.0 * res["counts"]["finished"] / res["wall_s"]
                per_level[str(n)] = res
            space = _space("noop", shape, device, configs, seeds, fixed, {"cpu": 1, "gpu": 0})
            noop = _fit(space, storage, "benchmarks.sweep_bench.noop_run", max_concurrent=1)
    finally:
        ray.shutdown()
    per_hour = {k: v.get("trials_per_device_hour") for k, v in per_level.items()}
    base = per_hour.get("1")
    return {
        "sweep_shape": shape,
        "sweep_grid": {"configs": configs, "seeds": seeds, **fixed},
        "sweep_trials_per_device_hour": per_hour,
        "sweep_packing_gain": {k: (v / base if v and base else None) for k, v in per_hour.items()},
        "sweep_levels": per_level,
        "ray_init_s": ray_init_s,
        "ray_overhead_per_trial_s": noop["wall_s"] / (configs * seeds),
        "ray_noop": noop,
    }
