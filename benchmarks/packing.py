"""Several trials on one device: N processes, each its own model copy and JoLA edit, each
running the training-step loop; the figure is the sum over processes of steps per second.

The processes are spawned (fresh interpreters, as Ray's workers are), build their model, warm
up, then wait on a barrier so that every process times the same window of ``duration_s``
seconds, synchronising the device after each step to count completed steps. A level that does
not fit (out of memory) is reported as an error, not a number. On a CPU every process uses the
harness's torch thread count (default 1), so CPU figures show the mechanism, not a GPU's gain.
"""

from __future__ import annotations

import queue as queue_mod
import time

import torch

from benchmarks.shapes import Shape, build_model, random_batch


def _worker(rank, shape, device, dtype_name, warmup, duration_s, threads, variant, barrier, out):
    """One packed trial: build, warm up, wait for the others, count steps for ``duration_s``."""
    from benchmarks import edit_variants
    from benchmarks.train_step import edit_step, sync

    try:
        if device == "cpu":
            torch.set_num_threads(threads)
        model, _ = build_model(shape, device, getattr(torch, dtype_name), seed=rank)
        from jola_ray.editing import JoLAConfig, apply_edit

        edit = apply_edit(model, JoLAConfig(seed=rank))
        model.train()
        edit_variants.install(edit, model, variant)
        batch = random_batch(shape, model.config.vocab_size, device, seed=rank)
        step = edit_step(model, batch, edit)
        for _ in range(warmup):
            step()
        sync(device)
    except Exception as err:
        out.put({"rank": rank, "error": f"{type(err).__name__}: {err}"[:300]})
        barrier.abort()
        return
    try:
        barrier.wait(timeout=600)
    except Exception:
        out.put({"rank": rank, "error": "another process failed before the timed window"})
        return
    steps = 0
    start = time.perf_counter()
    try:
        while time.perf_counter() - start < duration_s:
            step()
            sync(device)
            steps += 1
    except Exception as err:
        out.put({"rank": rank, "error": f"{type(err).__name__}: {err}"[:300]})
        return
    elapsed = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated() / 2**30 if device.startswith("cuda") else None
    out.put({"rank": rank, "steps": steps, "elapsed_s": elapsed, "peak_gb": peak})


def measure_level(
    shape: Shape,
    device: str,
    dtype: torch.dtype,
    processes: int,
    warmup: int,
    duration_s: float,
    variant: str = "plain",
    timeout_s: float = 900.0,
) -> dict:
    """Run ``processes`` packed trials at once; their summed steps/s, or an error."""
    ctx = torch.multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(processes)
    out = ctx.Queue()
    threads = torch.get_num_threads()  # on a CPU each process gets the harness's thread count
    dtype_name = str(dtype).removeprefix("torch.")
    procs = [
        ctx.Process(
            target=_worker,
            args=(r, shape, device, dtype_name, warmup, duration_s, threads, variant, barrier, out),
            daemon=True,
        )
        for r in range(processes)
    ]
    start = time.perf_counter()
    for p in procs:
        p.start()
    results = []
    deadline = start + timeout_s
    while len(results) < processes and time.perf_counter() < deadline:
        try:
            results.append(out.get(timeout=1.0))
        except queue_mod.Empty:
            if not any(p.is_alive() for p in procs) and out.empty():
                break
    for p in procs:
        p.join(timeout=30)
        if p.is_alive():
            p.kill()
    errors = [r["error"] for r in results if "error" in r]
    if errors or len(results) < processes:
        missing = processes - len(results)
        reason = errors[0] if errors else f"{missing} process(es) died without a result"
        return {"error": reason}
    per_process = [r["steps"] / r["elapsed_s"] for r in results]
    peaks = [r["peak_gb"] for r in results if r["peak_gb"] is not None]
    return {
        "steps_per_s": sum(per_process),
        "per_process_steps_per_s": per_process,
        "peak_gb_per_process": max(peaks) if peaks else None,
        "wall_s": time.perf_counter() - start,
    }


def run(
    shape: Shape,
    device: str,
    dtype: torch.dtype,
    levels: list[int],
    warmup: int,
    duration_s: float,
    variant: str = "plain",
) -> dict:
    """``trial_steps_per_s`` (level -> summed steps/s, None where it failed),
    ``packing_gain`` (level -> ratio to one process) and the per-level details."""
    details = {
        str(n): measure_level(shape, device, dtype, n, warmup, duration_s, variant) for n in levels
    }
    steps = {k: v.get("steps_per_s") for k, v in details.items()}
    base = steps.get("1")
    gain = {k: (v / base if v and base else None) for k, v in steps.items()}
    return {
        "trial_steps_per_s": steps,
        "packing_gain": gain,
        "packing_details": details,
        "packing_variant": variant,
    }
