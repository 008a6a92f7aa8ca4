"""A whole trial, split into setup (imports, model load, data), training and evaluation.

The trial is the library's own ``jola_ray.train.run`` (TRL trainer, dev evaluation after every
epoch, test evaluation of the best epoch) in a fresh Python process, as a Ray worker runs it.
A real-shape model is first saved with random weights (safetensors, with the tiny tokenizer) to
a temporary directory, so the trial loads it from local disk like a cached hub model; ``tiny``
uses the ``tiny-llama`` spec. The worker wraps, without changing them, the functions that mark
the phases and times them:

* ``imports_s``: interpreter start to torch, transformers, TRL, datasets and ``jola_ray.train``
  imported (measured from the parent's process start, so interpreter start-up is included);
* ``model_load_s``: ``jola_ray.train.loading.load_model_and_tokenizer``;
* ``data_s``: building the splits plus ``jola_ray.train.pipeline._datasets`` (TRL dataset
  preparation, once per stage);
* ``eval_s``: every ``jola_ray.evaluation.evaluate`` call (dev after each epoch, then test);
* ``training_s``: the rest of ``run`` (trainer construction, steps, checkpoints).

Setup is ``imports_s + model_load_s + data_s``; ``setup_fraction`` is its share of the trial's
wall time (the target is under 15% on the 1B shape with 200 train examples, 20 epochs, dev of
200 and test of 1,000 examples). Early stopping is off so every epoch runs.
"""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WORKER_FLAG = "--trial-worker"


def _wrap(module, name: str, bucket: list):
    """Replace ``module.name`` by a wrapper that appends each call's seconds to ``bucket``."""
    original = getattr(module, name, None)
    if original is None:
        return False

    def timed(*args, **kwargs):
        start = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            bucket.append(time.perf_counter() - start)

    setattr(module, name, timed)
    return True


def _worker(args: dict) -> dict:
    """Runs in the fresh process: imports, then one ``run`` with the phases timed."""
    t_imports = time.perf_counter()
    import torch  # noqa: F401
    import transformers  # noqa: F401

    import jola_ray.evaluation
    import jola_ray.train.loading
    import jola_ray.train.pipeline as train_run
    from jola_ray.train import RunConfig

    try:  # TRL and datasets load inside run(); count them as imports
        import datasets  # noqa: F401
        import trl  # noqa: F401
    except ImportError:
        pass
    imports_s = time.perf_counter() - t_imports

    from benchmarks.decode_speed import bench_examples, bench_task
    from jola_ray.data.task import Splits

    buckets: dict[str, list] = {"model_load": [], "data": [], "eval": []}
    wrapped = {
        "load_model_and_tokenizer": _wrap(
            jola_ray.train.loading, "load_model_and_tokenizer", buckets["model_load"]
        ),
        "_datasets": _wrap(train_run, "_datasets", buckets["data"]),
        "evaluate": _wrap(jola_ray.evaluation, "evaluate", buckets["eval"]),
    }
    t_data = time.perf_counter()
    task = bench_task(new_tokens=16)
    examples = bench_examples(args["train"] + args["dev"] + args["test"], args["prompt_tokens"])
    n_train, n_dev = args["train"], args["dev"]
    splits = Splits(
        train=examples[:n_train],
        dev=examples[n_train : n_train + n_dev],
        test=examples[n_train + n_dev :],
    )
    data_s = time.perf_counter() - t_data
    cfg = RunConfig.from_dict(
        {
            "model": args["model"],
            "dtype": args["dtype"],
            "device": args["device"],
            "task": task.name,
            "epochs": args["epochs"],
            "batch_size": 8,
            "eval_batch_size": args["eval_batch_size"],
            "decoding": "greedy",
            "patience": 0,
            "output_dir": args["output_dir"],
            "train_size": n_train,
            "dev_size": n_dev,
        }
    )
    reports: list[float] = []
    t_run = time.perf_counter()
    final = train_run.run(
        cfg,
        report=lambda m, d: reports.append(time.perf_counter() - t_run),
        task=task,
        splits=splits,
    )
    run_s = time.perf_counter() - t_run
    model_load_s = sum(buckets["model_load"])
    data_in_run_s = sum(buckets["data"])
    eval_s = sum(buckets["eval"])
    return {
        "imports_in_process_s": imports_s,
        "model_load_s": model_load_s,
        "data_outside_run_s": data_s,
        "data_in_run_s": data_in_run_s,
        "eval_s": eval_s,
        "eval_calls": len(buckets["eval"]),
        "training_s": run_s - model_load_s - data_in_run_s - eval_s,
        "run_s": run_s,
        "epochs_reported": len(reports) - 1,
        "cost_steps": final.get("cost_steps"),
        "wrapped": wrapped,
    }


def _save_random_model(shape, device: str, directory: Path) -> None:
    """Write ``shape`` with random bf16 weights and the tiny tokenizer to ``directory``."""
    import torch

    from benchmarks.shapes import build_model

    model, tok = build_model(shape, device, torch.bfloat16)
    model.save_pretrained(directory)
    tok.save_pretrained(directory)
    del model
    gc.collect()
    if device.startswith("cuda"):
        torch.cuda.empty_cache()


def run(
    shape,
    device: str,
    train: int = 200,
    dev: int = 200,
    test: int = 1000,
    epochs: int = 20,
    prompt_tokens: int = 160,
    eval_batch_size: int = 64,
    timeout_s: float = 1800.0,
) -> dict:
    """One whole trial of ``shape`` in a subprocess; the phase split, or an ``error``."""
    with tempfile.TemporaryDirectory(prefix="jola-bench-trial-") as tmp:
        tmp_path = Path(tmp)
        if shape.tiny:
            model, dtype = "tiny-llama", "fp32"
        else:
            model, dtype = str(tmp_path / "model"), "bf16"
            _save_random_model(shape, device, tmp_path / "model")
        args = {
            "model": model,
            "dtype": dtype,
            "device": device,
            "train": train,
            "dev": dev,
            "test": test,
            "epochs": epochs,
            "prompt_tokens": prompt_tokens,
            "eval_batch_size": eval_batch_size,
            "output_dir": str(tmp_path / "run"),
        }
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
        root = str(Path(__file__).resolve().parent.parent)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
        cmd = [sys.executable, "-m", "benchmarks.trial", WORKER_FLAG, json.dumps(args)]
        start = time.perf_counter()
        try:
            proc = subprocess.run(
                cmd, capture_output=True, text=True, env=env, cwd=root, timeout=timeout_s
            )
        except subprocess.TimeoutExpired:
            return {"error": f"trial did not finish within {timeout_s:.0f} s"}
        wall = time.perf_counter() - start
    if proc.returncode != 0:
        return {"error": (proc.stderr or proc.stdout).strip()[-800:]}
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    # Interpreter start-up and imports: the process's wall time outside run() and the splits.
    imports_s = wall - result["run_s"] - result["data_outside_run_s"]
    data_s = result["data_outside_run_s"] + result["data_in_run_s"]
    setup_s = imports_s + result["model_load_s"] + data_s
    phases = {
        "imports_s": imports_s,
        "model_load_s": result["model_load_s"],
        "data_s": data_s,
        "training_s": result["training_s"],
        "eval_s": result["eval_s"],
    }
    return {
        "trial_wall_s": wall,
        "trial_phases_s": phases,
        "trial_setup_s": setup_s,
        "trial_setup_fraction": setup_s / wall,
        "trial_epochs": result["epochs_reported"],
        "trial_steps": result["cost_steps"],
        "trial_eval_calls": result["eval_calls"],
        "trial_sizes": {"train": train, "dev": dev, "test": test, "epochs": epochs},
        "trial_wrapped": result["wrapped"],
    }


if __name__ == "__main__" and len(sys.argv) == 3 and sys.argv[1] == WORKER_FLAG:
    out = _worker(json.loads(sys.argv[2]))
    sys.stdout.flush()
    print(json.dumps(out))
