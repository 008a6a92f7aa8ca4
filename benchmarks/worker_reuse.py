"""What a worker that keeps its model saves: time to a trial's first step, and the demo sweep.

* ``first_step``: the time from a trial's start to its first optimizer step (``Trainer.training_step``
  first called). In a fresh process (what every GPU trial was: ``reuse_actors=False``) it is
  measured from the interpreter's start (imports, model load from disk, data, trainer); in a
  worker that already ran a trial of the same model it is measured from ``run()`` being called
  with the worker's resident (``jola_ray.train.resident``). The model is the ``cpu-small``
  shape saved to disk with random weights, the run ``jola-ray train``'s defaults but one epoch.
* ``sweep``: the embedded demo sweep (``jola-ray sweep demo``, 24 trials) through
  ``run_sweep`` with ``reuse_actors=False`` (a fresh process per trial, as GPU trials ran) and
  with reused workers; the ratio of their wall times.

    python -m benchmarks.worker_reuse first_step
    python -m benchmarks.worker_reuse sweep
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
FLAG = "--fresh-worker"


def _first_step_clock(bucket: list, origin: float) -> None:
    """Record (once per trial) the seconds from ``origin[0]`` to the first training step."""
    import transformers

    original = transformers.Trainer.training_step

    def timed(self, *args, **kwargs):
        if not getattr(self, "_first_step_seen", False):
            self._first_step_seen = True
            bucket.append(time.perf_counter() - origin[0])
        return original(self, *args, **kwargs)

    transformers.Trainer.training_step = timed


def _cfg(model_dir: str, out: str):
    from jola_ray.train import RunConfig

    return RunConfig.from_dict(
        {"model": model_dir, "dtype": "fp32", "device": "cpu", "epochs": 1, "output_dir": out}
    )


def _fresh_worker(model_dir: str, out: str, start: float) -> None:
    """In a fresh process: one trial without a resident; prints seconds to the first step."""
    bucket: list = []
    _first_step_clock(bucket, [start])
    from jola_ray.train.pipeline import run

    run(_cfg(model_dir, out))
    print(json.dumps({"first_step_s": bucket[0]}))


def first_step() -> dict:
    import torch

    torch.set_num_threads(1)
    from benchmarks.shapes import get_shape
    from benchmarks.trial import _save_random_model
    from jola_ray.train.pipeline import run
    from jola_ray.train.resident import Resident

    with tempfile.TemporaryDirectory(prefix="jola-bench-reuse-") as tmp:
        model_dir = str(Path(tmp) / "model")
        _save_random_model(get_shape("cpu-small"), "cpu", Path(model_dir))
        env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH")) if p)
        start = time.time()
        proc = subprocess.run(
            [sys.executable, "-m", "benchmarks.worker_reuse", FLAG, model_dir, tmp, str(start)],
            capture_output=True,
            text=True,
            env=env,
            cwd=REPO_ROOT,
        )
        if proc.returncode != 0:
            return {"error": proc.stderr[-800:]}
        fresh = json.loads(proc.stdout.strip().splitlines()[-1])["first_step_s"]
        bucket: list = []
        origin = [0.0]
        _first_step_clock(bucket, origin)
        resident = Resident(freeze=True)  # as the worker's own (resident.WORKER)
        for i in range(3):
            origin[0] = time.perf_counter()
            run(_cfg(model_dir, str(Path(tmp) / f"w{i}")), resident=resident)
    return {
        "fresh_process_first_step_s": fresh,
        "worker_first_trial_first_step_s": bucket[0],
        "worker_later_trials_first_step_s": bucket[1:],
        "model_loads": resident.loads,
    }


def sweep() -> dict:
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    paths = [str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
    from jola_ray.sweep import load_space, run_sweep

    out: dict = {}
    for reuse in (True, False):
        with tempfile.TemporaryDirectory(prefix="jola-bench-demo-") as storage:
            outcome = run_sweep(
                load_space("demo"), storage_path=storage, reuse_actors=reuse, say=lambda s: None
            )
            out[f"reuse_actors={reuse}"] = {"wall_s": outcome.wall_s, "counts": outcome.counts()}
    out["fresh_over_reused"] = (
        out["reuse_actors=False"]["wall_s"] / out["reuse_actors=True"]["wall_s"]
    )
    return out


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == FLAG:
        _fresh_worker(
            sys.argv[2], sys.argv[3], float(sys.argv[4]) - time.time() + time.perf_counter()
        )
    else:
        what = sys.argv[1] if len(sys.argv) > 1 else "first_step"
        print(json.dumps(first_step() if what == "first_step" else sweep(), indent=1))
