"""Several trials on one device, two ways: K processes, each its own model copy and JoLA edit
(the figure is the sum over processes of steps per second), and one trial pack, K JoLA
configurations over one frozen model in one process (``jola_ray.editing.pack``: the K batches
stacked, K x B rows, each slice edited by its own configuration, K AdamW optimizers); a pack
step is K trial-steps.

The processes are spawned (fresh interpreters, as Ray's workers are), build their model, warm
up, then wait on a barrier so that every process times the same window of ``duration_s``
seconds, synchronising the device after each step to count completed steps. A level that does
not fit (out of memory) is reported as an error, not a number. On a CPU every process uses the
harness's torch thread count (default 1), so CPU figures show the mechanism, not a GPU's gain.
"""

from __future__ import annotations

import queue as queue_mod
import tempfile
import time
from pathlib import Path

import torch

from benchmarks.shapes import Shape, build_model, random_batch


def pack_step(model, batch: dict, k: int, seed: int = 0):
    """One trial pack's training step: K JoLA configurations (their own init, learning rate
    and AdamW) on ``batch`` stacked K times; returns ``step()``."""
    from jola_ray.editing import JoLAConfig
    from jola_ray.editing.pack import build_pack

    pack = build_pack(model, [JoLAConfig(seed=seed * 100 + i) for i in range(k)])
    model.train()
    optimizers = [torch.optim.AdamW(pack.member_parameters(i), lr=1e-3 * (i + 1)) for i in range(k)]
    rows = batch["input_ids"].shape[0]
    stacked = torch.cat([batch["input_ids"]] * k)  # (B, t) -> (K*B, t)
    targets = batch["labels"][:, 1:].flatten()  # the next token of every position: (B*(t-1),)

    def step() -> None:
        logits = model(input_ids=stacked).logits  # (K*B, t, V)
        loss = 0.0
        for i, penalty in pack.penalties().items():
            mine = logits[i * rows : (i + 1) * rows, :-1].flatten(0, 1)  # (B*(t-1), V)
            loss = loss + torch.nn.functional.cross_entropy(mine.float(), targets) + penalty
        loss.backward()
        for opt in optimizers:
            opt.step()
            opt.zero_grad(set_to_none=True)

    return step


def _worker(
    rank, shape, device, dtype_name, warmup, duration_s, threads, variant, barrier, out, pack=0
):
    """One trial (or one pack of ``pack`` configurations): build, warm up, wait for the
    others, count steps for ``duration_s``."""
    from benchmarks import edit_variants
    from benchmarks.train_step import edit_step, sync

    try:
        if device == "cpu":
            torch.set_num_threads(threads)
        model, _ = build_model(shape, device, getattr(torch, dtype_name), seed=rank)
        batch = random_batch(shape, model.config.vocab_size, device, seed=rank)
        if pack:
            step = pack_step(model, batch, pack, seed=rank)
        else:
            from jola_ray.editing import JoLAConfig, apply_edit

            edit = apply_edit(model, JoLAConfig(seed=rank))
            model.train()
            edit_variants.install(edit, model, variant)
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
    trial_steps = steps * (pack or 1)  # a pack step trains every configuration once
    out.put({"rank": rank, "steps": trial_steps, "elapsed_s": elapsed, "peak_gb": peak})


def measure_level(
    shape: Shape,
    device: str,
    dtype: torch.dtype,
    processes: int,
    warmup: int,
    duration_s: float,
    variant: str = "plain",
    timeout_s: float = 900.0,
    pack: int = 0,
) -> dict:
    """Run ``processes`` trials at once (each a pack of ``pack`` configurations when > 0);
    their summed trial-steps/s, or an error."""
    ctx = torch.multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(processes)
    out = ctx.Queue()
    threads = torch.get_num_threads()  # on a CPU each process gets the harness's thread count
    dtype_name = str(dtype).removeprefix("torch.")
    procs = [
        ctx.Process(
            target=_worker,
            args=(
                r,
                shape,
                device,
                dtype_name,
                warmup,
                duration_s,
                threads,
                variant,
                barrier,
                out,
                pack,
            ),
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
    """K separate trials vs one pack of K, for K in ``levels``.

    ``trial_steps_per_s`` (K -> summed steps/s of K processes, None where it failed),
    ``packing_gain`` (K -> ratio to one process), ``pack_trial_steps_per_s`` (K -> trial-steps/s
    of one pack of K), ``pack_gain`` (K -> ratio to one process), ``pack_vs_processes`` (K ->
    pack over K processes) and the per-level details of both.
    """
    details = {
        str(n): measure_level(shape, device, dtype, n, warmup, duration_s, variant) for n in levels
    }
    packed = {
        str(n): measure_level(shape, device, dtype, 1, warmup, duration_s, "plain", pack=n)
        for n in levels
    }
    steps = {k: v.get("steps_per_s") for k, v in details.items()}
    pack_steps = {k: v.get("steps_per_s") for k, v in packed.items()}
    base = steps.get("1")

    def ratio(a, b):
        return a / b if a and b else None

    return {
        "trial_steps_per_s": steps,
        "packing_gain": {k: ratio(v, base) for k, v in steps.items()},
        "packing_details": details,
        "packing_variant": variant,
        "pack_trial_steps_per_s": pack_steps,
        "pack_gain": {k: ratio(v, base) for k, v in pack_steps.items()},
        "pack_vs_processes": {k: ratio(v, steps.get(k)) for k, v in pack_steps.items()},
        "pack_details": packed,
    }


def group_runs(levels=(1, 2, 5, 10), task: str = "demo_parity", seed: int = 42) -> dict:
    """Whole runs in one process, without Ray: K JoLA configurations of one demo group trained
    one after the other through the sweep worker's run (``resident.run_in_worker``: one model
    load, kept data) vs together in one pack (``run_pack``), for K in ``levels``.

    The configurations are the demo space's JoLA ones (d1..d5) and, beyond five, the same at
    half the learning rate; the space's fixed settings (6 epochs, patience 2, label scoring)
    apply. A warm-up run first (imports, the model load). Seconds of each way and their ratio.
    """
    import os

    from jola_ray.sweep.space import load_space, run_config_dict
    from jola_ray.train import RunConfig
    from jola_ray.train.pack import run_pack
    from jola_ray.train.resident import run_in_worker

    space = load_space("demo")
    base = [t for t in space.trials() if t["method"] == "jola"]
    base = [t for t in base if t["task"] == task and t["seed"] == seed]
    tmp = tempfile.mkdtemp(prefix="jola-pack-group-")
    count = iter(range(10**6))

    def configs(k: int) -> list:
        out = []
        for i in range(k):
            trial = base[i % len(base)]
            flat = run_config_dict(trial)
            if i >= len(base):
                flat["lr"] = flat["lr"] / 2
            flat["output_dir"] = os.path.join(tmp, str(next(count)))
            out.append(RunConfig.from_dict(flat))
        return out

    run_in_worker(configs(1)[0])  # warm-up: imports, the model load, the data
    rows = {}
    for k in levels:
        start = time.perf_counter()
        for cfg in configs(k):
            run_in_worker(cfg)
        alone = time.perf_counter() - start
        start = time.perf_counter()
        run_pack(configs(k), pack_dir=os.path.join(tmp, f"pack{next(count)}"))
        packed = time.perf_counter() - start
        rows[str(k)] = {"alone_s": alone, "packed_s": packed, "ratio": packed / alone}
    return {"task": task, "seed": seed, "levels": rows, "threads": torch.get_num_threads()}


def trainer_runs(
    shape_name: str = "tiny",
    device: str = "cpu",
    levels=(1, 5),
    train: int = 64,
    epochs: int = 3,
    prompt_tokens: int = 160,
) -> dict:
    """K configurations of one group through the library's own training path, the sweep
    worker's (TRL trainer, answer-only loss, dev pass per epoch, test at the end): one after
    the other (``resident.run_in_worker``, the model kept between them) vs one pack
    (``resident.run_pack_in_worker``), for K in ``levels``, on ``shape_name`` with random
    weights (saved to local disk first, as a cached hub model) and synthetic four-label data
    (``train`` examples, dev and test of 8 each, label scoring, no early stopping).

    This is the GPU issue's "trial throughput": the same K trials' work, one trial at a time
    on the device vs packed; ``gain`` is alone seconds / packed seconds and the trial-steps
    per second are the members' optimizer steps over the wall time. (The ``packing`` section
    above times a bare step; this one includes everything a trial's step costs.)
    """
    import os

    from benchmarks.decode_speed import bench_examples, bench_task
    from benchmarks.shapes import get_shape
    from benchmarks.trial import _save_random_model
    from jola_ray.data.task import Splits
    from jola_ray.train import RunConfig
    from jola_ray.train.resident import run_in_worker, run_pack_in_worker

    shape = get_shape(shape_name)
    tmp = tempfile.mkdtemp(prefix="jola-pack-trainer-")
    if shape.tiny:
        model, dtype = "tiny-llama", "fp32"
    else:
        model, dtype = os.path.join(tmp, "model"), "bf16" if device.startswith("cuda") else "fp32"
        _save_random_model(shape, device, Path(model))
    task = bench_task(new_tokens=4)
    examples = bench_examples(train + 16, prompt_tokens)
    splits = Splits(train=examples[:train], dev=examples[train : train + 8], test=examples[-8:])
    count = iter(range(10**6))

    def configs(k: int) -> list:
        return [
            RunConfig.from_dict(
                {
                    "model": model,
                    "dtype": dtype,
                    "device": device,
                    "task": task.name,
                    "train_size": train,
                    "dev_size": 8,
                    "test_size": 8,
                    "epochs": epochs,
                    "batch_size": shape.batch_size,
                    "eval_batch_size": 8,
                    "decoding": "label_scoring",
                    "patience": 0,
                    "warmup_steps": 0,
                    "lr": 1e-3 * (1 + i),  # a group: the rate differs
                    "output_dir": os.path.join(tmp, str(next(count))),
                }
            )
            for i in range(k)
        ]

    def timed(fn) -> tuple[float, list]:
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        out = fn()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        return time.perf_counter() - start, out

    run_in_worker(configs(1)[0], task=task, splits=splits)  # warm-up: imports, the model load
    rows = {}
    for k in levels:
        try:
            alone_s, finals = timed(
                lambda k=k: [run_in_worker(c, task=task, splits=splits) for c in configs(k)]
            )
            steps = sum(int(f.get("cost_steps") or 0) for f in finals)
            packed_s, pfinals = timed(
                lambda k=k: run_pack_in_worker(
                    configs(k), pack_dir=os.path.join(tmp, f"pack{next(count)}"), task=task,
                    splits=splits,
                )
            )  # fmt: skip
            psteps = sum(int(f.get("cost_steps") or 0) for f in pfinals if f)
        except Exception as err:  # out of memory at this level: an error, not a number
            rows[str(k)] = {"error": f"{type(err).__name__}: {err}"[:300]}
            continue
        rows[str(k)] = {
            "alone_s": alone_s,
            "packed_s": packed_s,
            "gain": alone_s / packed_s,
            "alone_trial_steps_per_s": steps / alone_s,
            "packed_trial_steps_per_s": psteps / packed_s,
            "trial_steps": [steps, psteps],
        }
    peak = torch.cuda.max_memory_allocated() / 2**30 if device.startswith("cuda") else None
    return {
        "shape": shape_name,
        "device": device,
        "train": train,
        "epochs": epochs,
        "levels": rows,
        "peak_mem_gb": peak,
    }


def demo_sweep_pair(
    space_name: str = "demo",
    storage: str | None = None,
    order=("plain", "packed"),
    methods: tuple[str, ...] | None = None,
    warmup: bool = True,
):
    """The shipped ``space_name`` swept unpacked and packed (``pack: true``) side by side in one
    session (one local Ray, runs back to back): wall seconds of each, their ratio, and whether
    the two select the same configurations with the same test scores. ``methods``: sweep only
    these of the space's methods (e.g. ``jola,zero_shot``: the demo as it was before the
    baselines joined it). ``warmup``: a one-trial sweep first, not timed (see there)."""
    import dataclasses

    from analysis.load import load_experiment
    from analysis.select import select_configs
    from jola_ray.sweep.runner import run_sweep
    from jola_ray.sweep.space import load_space

    base = load_space(space_name)
    if methods:
        base = dataclasses.replace(
            base,
            methods=tuple(m for m in base.methods if m in methods),
            configs={m: c for m, c in base.configs.items() if m in methods},
        )
    storage = storage or tempfile.mkdtemp(prefix="jola-pack-sweep-")
    out: dict = {"space": space_name, "methods": list(base.methods), "storage": storage, "runs": {}}
    if warmup:
        # the first sweep of a process pays the driver's lazy imports (Tune's controller,
        # storage, loggers) and Ray's first session: a one-trial zero-shot sweep takes them,
        # so that neither timed sweep does (the order of the pair no longer matters)
        first = dataclasses.replace(
            base,
            name=f"{space_name}_warmup",
            tasks=base.tasks[:1],
            seeds=base.seeds[:1],
            methods=("zero_shot",),
            configs={},
            pack=0,
        )
        start = time.perf_counter()
        run_sweep(first, storage_path=storage, say=lambda s: None)
        out["warmup_s"] = time.perf_counter() - start
    for mode in order:
        pack = max(len(c) for c in base.configs.values()) if mode == "packed" else 0
        space = dataclasses.replace(base, name=f"{space_name}_{mode}", pack=pack)
        start = time.perf_counter()
        outcome = run_sweep(space, storage_path=storage, say=lambda s: None)
        wall = time.perf_counter() - start
        trials, _ = load_experiment(outcome.experiment_path)
        picked = select_configs(trials)
        out["runs"][mode] = {
            "wall_s": wall,
            "ray_trials": len(space.trials()),
            "configurations": len(trials),
            "statuses": trials["status"].value_counts().to_dict(),
            "selected": {
                "|".join(str(row.get(k)) for k in ("task", "seed", "method")): [
                    row.get("config_name"),
                    row.get("test_score"),
                ]
                for row in picked.to_dict("records")
            },
        }
    plain, packed = out["runs"]["plain"], out["runs"]["packed"]
    out["wall_ratio"] = packed["wall_s"] / plain["wall_s"]
    out["same_selection"] = plain["selected"] == packed["selected"]
    return out


def _main() -> None:
    """``python -m benchmarks.packing --demo [--methods M,..] [--out FILE]``: the paired demo
    sweeps; ``--group``: whole runs in one process, K alone vs one pack of K."""
    import argparse
    import json
    import os

    p = argparse.ArgumentParser(description=demo_sweep_pair.__doc__)
    p.add_argument("--demo", action="store_true", help="run the paired demo sweeps")
    p.add_argument("--group", action="store_true", help="K runs alone vs one pack, no Ray")
    p.add_argument(
        "--trainer",
        action="store_true",
        help="K runs alone vs one pack through the trainer on --shape/--device (GPU figure)",
    )
    p.add_argument("--shape", default="tiny", help="with --trainer: tiny, 1b, 8b, ...")
    p.add_argument("--device", default="cpu", help="with --trainer: cpu or cuda")
    p.add_argument("--levels", default="1,5", help="with --trainer: pack sizes K")
    p.add_argument("--quick", action="store_true", help="with --trainer: smoke sizes")
    p.add_argument("--methods", default=None, help="only these methods of the space (a,b)")
    p.add_argument("--space", default="demo")
    p.add_argument("--out", default="benchmarks/results/cpu-pack-sweep.json")
    p.add_argument("--order", default="plain,packed", help="plain,packed or packed,plain")
    p.add_argument(
        "--no-warmup",
        action="store_true",
        help="time the first sweep of the process too (it pays the driver's lazy imports)",
    )
    args = p.parse_args()
    if args.group:
        torch.set_num_threads(1)
        result = group_runs()
        result["load_average_at_end"] = os.getloadavg()
        with open(args.out, "w") as fh:
            json.dump(result, fh, indent=1)
        for k, row in result["levels"].items():
            print(
                f"K={k:>2}: alone {row['alone_s']:6.2f} s  pack {row['packed_s']:6.2f} s  "
                f"pack/alone {row['ratio']:.2f}x"
            )
        return
    if args.trainer:
        if args.device == "cpu":
            torch.set_num_threads(1)
        sizes = {"train": 16, "epochs": 2} if args.quick else {}
        levels = tuple(int(x) for x in args.levels.split(","))
        started = time.perf_counter()
        result = trainer_runs(args.shape, args.device, levels, **sizes)
        import shlex
        import sys

        from benchmarks.run import result_meta

        command = "python -m benchmarks.packing " + " ".join(map(shlex.quote, sys.argv[1:]))
        meta = result_meta(command, args.device, args.quick)
        meta["wall_s"] = time.perf_counter() - started
        with open(args.out, "w") as fh:  # the harness's layout: benchmarks.report merges it
            json.dump({"meta": meta, "shapes": {args.shape: {"pack_runs": result}}}, fh, indent=1)
        for k, row in result["levels"].items():
            if "error" in row:
                print(f"K={k:>2}: {row['error']}")
                continue
            print(
                f"K={k:>2}: alone {row['alone_s']:7.2f} s  pack {row['packed_s']:7.2f} s  "
                f"gain {row['gain']:.2f}x  trial-steps/s {row['alone_trial_steps_per_s']:.1f} "
                f"-> {row['packed_trial_steps_per_s']:.1f}"
            )
        return
    if not args.demo:
        p.error("nothing to do: give --demo, --group or --trainer")
    methods = tuple(args.methods.split(",")) if args.methods else None
    result = demo_sweep_pair(
        args.space,
        order=tuple(args.order.split(",")),
        methods=methods,
        warmup=not args.no_warmup,
    )
    result["load_average_at_end"] = os.getloadavg()
    with open(args.out, "w") as fh:
        json.dump(result, fh, indent=1, default=str)
    for mode, r in result["runs"].items():
        print(f"{mode:7s} {r['wall_s']:8.1f} s  {r['ray_trials']:3d} Ray trials  {r['statuses']}")
    print(
        f"packed / unpacked wall time: {result['wall_ratio']:.2f}x; "
        f"same selection and test scores: {result['same_selection']}"
    )


if __name__ == "__main__":
    _main()
