"""A whole trial, split into setup (imports, model load, data), training and evaluation phases.

The trial is the library's own ``jola_ray.train.run`` (TRL trainer, dev evaluation after every
epoch, test evaluation of the best epoch) in a fresh Python process, as a Ray worker runs it.
A real-shape model is first saved with random weights (safetensors, with the tiny tokenizer) to
a temporary directory, so the trial loads it from local disk like a cached hub model; ``tiny``
uses the ``tiny-llama`` spec. The worker wraps, without changing them, the functions that mark
the phases and times each phase *exclusively* (a call's time minus the wrapped calls nested in
it), so nested phases are never counted twice:

* ``imports_s``: interpreter start to torch, transformers, TRL, datasets and ``jola_ray.train``
  imported (measured from the parent's process start, so interpreter start-up is included);
* ``model_load_s``: ``jola_ray.train.loading.load_model_and_tokenizer``;
* ``data_s``: building the splits plus the TRL datasets (``jola_ray.train.pipeline._datasets``);
* ``dev_loss_s``: the dev loss: the Trainer's own evaluation loop (``Trainer.evaluate``, where
  it still runs) or the library's answer-token loss (``jola_ray.evaluation.answer_loss``);
* ``dev_score_s``: the dev score (``jola_ray.train.pipeline._evaluate`` on the dev split);
* ``test_s``: the test evaluation of the best epoch;
* ``training_s``: the rest of ``run`` (trainer construction, steps, checkpoints, callbacks).

``dev_eval_fraction`` is ``(dev_loss_s + dev_score_s)`` over the trial's wall time.

Two kinds of trial: the fixed-size one (``defaults=False``: 200 train examples, 20 epochs with
early stopping off, dev of 200 and test of 1,000 synthetic examples at batch 64; setup's share is
the figure there), and ``defaults=True``: exactly what ``jola-ray train --model M`` runs with
every other setting at its default (task ``demo_vowel``, 200 train / 200 dev, greedy decoding,
early stopping with patience 2), which is where the dev evaluation's share is measured.

    python -m benchmarks.trial --shape cpu-small --defaults     # prints the JSON split
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

WORKER_FLAG = "--trial-worker"
PHASES = ("model_load", "data", "dev_loss", "dev_score", "test", "training")


class PhaseClock:
    """Exclusive wall time per phase of wrapped functions (nested wrapped calls subtracted)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self._stack: list[list[float]] = []  # one [nested seconds] per open call

    def wrap(self, owner, name: str, phase: str | Callable[..., str]) -> bool:
        """Replace ``owner.name`` by a timed wrapper; ``phase`` may pick the phase from the
        call's arguments. False when ``owner`` has no such attribute (the code moved on)."""
        original = getattr(owner, name, None)
        if original is None:
            return False

        def timed(*args, **kwargs):
            key = phase(*args, **kwargs) if callable(phase) else phase
            self._stack.append([0.0])
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                elapsed = time.perf_counter() - start
                nested = self._stack.pop()[0]
                self.seconds[key] += elapsed - nested
                self.calls[key] += 1
                if self._stack:
                    self._stack[-1][0] += elapsed

        setattr(owner, name, timed)
        return True


def _split_phase(ctx, examples, split, *args, **kwargs) -> str:
    return "dev_score" if split == "dev" else "test"


def _worker(args: dict) -> dict:
    """Runs in the fresh process: imports, then one ``run`` with the phases timed."""
    t_imports = time.perf_counter()
    import importlib

    import torch  # noqa: F401
    import transformers

    import jola_ray.data
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

    clock = PhaseClock()
    wrapped = {
        "load_model_and_tokenizer": clock.wrap(
            jola_ray.train.loading, "load_model_and_tokenizer", "model_load"
        ),
        "load_splits": clock.wrap(jola_ray.data, "load_splits", "data"),
        "_datasets": clock.wrap(train_run, "_datasets", "data"),
        "_evaluate": clock.wrap(train_run, "_evaluate", _split_phase),
        "Trainer.evaluate": clock.wrap(transformers.Trainer, "evaluate", "dev_loss"),
    }
    try:  # the answer-token dev loss, where the library has it
        answer_loss = importlib.import_module("jola_ray.evaluation.answer_loss")
        wrapped["answer_loss.dev_loss"] = clock.wrap(answer_loss, "dev_loss", "dev_loss")
    except ImportError:
        pass
    t_data = time.perf_counter()
    if args["defaults"]:
        task = splits = None
        cfg = RunConfig.from_dict(
            {
                "model": args["model"],
                "dtype": args["dtype"],
                "device": args["device"],
                "output_dir": args["output_dir"],
            }
        )
    else:
        from benchmarks.decode_speed import bench_examples, bench_task
        from jola_ray.data.task import Splits

        task = bench_task(new_tokens=16)
        examples = bench_examples(args["train"] + args["dev"] + args["test"], args["prompt_tokens"])
        n_train, n_dev = args["train"], args["dev"]
        splits = Splits(
            train=examples[:n_train],
            dev=examples[n_train : n_train + n_dev],
            test=examples[n_train + n_dev :],
        )
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
    data_s = time.perf_counter() - t_data
    reports: list[float] = []
    t_run = time.perf_counter()
    final = train_run.run(
        cfg,
        report=lambda m, d: reports.append(time.perf_counter() - t_run),
        task=task,
        splits=splits,
    )
    run_s = time.perf_counter() - t_run
    phases = {p: clock.seconds.get(p, 0.0) for p in PHASES if p != "training"}
    phases["training"] = run_s - sum(phases.values())
    return {
        "imports_in_process_s": imports_s,
        "data_outside_run_s": data_s,
        "phases_in_run_s": phases,
        "calls": dict(clock.calls),
        "run_s": run_s,
        "epochs_reported": len(reports) - 1,
        "cost_steps": final.get("cost_steps"),
        "test_score": final.get("test_score"),
        "best_epoch": final.get("best_epoch"),
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
    defaults: bool = False,
) -> dict:
    """One whole trial of ``shape`` in a subprocess; the phase split, or an ``error``.

    ``defaults``: the trial is ``jola-ray train`` with every setting at its default but the
    model, dtype (fp32 on a CPU) and device; the size arguments are then not used.
    """
    with tempfile.TemporaryDirectory(prefix="jola-bench-trial-") as tmp:
        tmp_path = Path(tmp)
        if shape.tiny:
            model, dtype = "tiny-llama", "fp32"
        else:
            dtype = "bf16" if device.startswith("cuda") else "fp32"  # the shapes' defaults
            model = str(tmp_path / "model")
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
            "defaults": defaults,
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
    inner = result["phases_in_run_s"]
    phases = {
        "imports_s": imports_s,
        "model_load_s": inner["model_load"],
        "data_s": result["data_outside_run_s"] + inner["data"],
        "training_s": inner["training"],
        "dev_loss_s": inner["dev_loss"],
        "dev_score_s": inner["dev_score"],
        "test_s": inner["test"],
    }
    setup_s = imports_s + phases["model_load_s"] + phases["data_s"]
    dev_eval_s = phases["dev_loss_s"] + phases["dev_score_s"]
    return {
        "trial_wall_s": wall,
        "trial_phases_s": phases,
        "trial_setup_s": setup_s,
        "trial_setup_fraction": setup_s / wall,
        "trial_dev_eval_s": dev_eval_s,
        "trial_dev_eval_fraction": dev_eval_s / wall,
        "trial_training_fraction": phases["training_s"] / wall,
        "trial_epochs": result["epochs_reported"],
        "trial_steps": result["cost_steps"],
        "trial_best_epoch": result["best_epoch"],
        "trial_test_score": result["test_score"],
        "trial_calls": result["calls"],
        "trial_eval_calls": result["calls"].get("dev_score", 0) + result["calls"].get("test", 0),
        "trial_sizes": (
            {"defaults": "jola-ray train"}
            if defaults
            else {"train": train, "dev": dev, "test": test, "epochs": epochs}
        ),
        "trial_wrapped": result["wrapped"],
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.trial", description=__doc__.split("\n")[0]
    )
    p.add_argument("--shape", default="cpu-small")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument("--defaults", action="store_true", help="the jola-ray train defaults trial")
    p.add_argument("--threads", type=int, default=1, help="torch threads of the trial (CPU)")
    args = p.parse_args(argv)
    from benchmarks.shapes import get_shape

    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    res = run(get_shape(args.shape), args.device, defaults=args.defaults)
    print(json.dumps(res, indent=1))
    return 0 if "error" not in res else 1


if __name__ == "__main__" and len(sys.argv) == 3 and sys.argv[1] == WORKER_FLAG:
    out = _worker(json.loads(sys.argv[2]))
    sys.stdout.flush()
    print(json.dumps(out))
elif __name__ == "__main__":
    sys.exit(main())
