"""Ray's fixed cost per trial with stub runs (no model): a 20-trial grid, 1 epoch each.

    .venv/bin/python tests/sweep/measure_overhead.py [NUM_CPUS]

Starts a local Ray (loopback), runs the grid twice (a fresh process per trial, as GPU sweeps do;
then reusing worker processes, as CPU-only sweeps do) and prints trials per second for each.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
os.environ["PYTHONPATH"] = os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])
os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"


def main() -> None:
    import ray

    from jola_ray.sweep.runner import run_sweep
    from jola_ray.sweep.space import parse_space

    cpus = int(sys.argv[1]) if len(sys.argv) > 1 else 2
    t0 = time.monotonic()
    ray.init(
        num_cpus=cpus,
        object_store_memory=256 << 20,
        include_dashboard=False,
        log_to_driver=False,
        logging_level="WARNING",
    )
    print(f"ray.init: {time.monotonic() - t0:.1f}s")
    raw = {
        "name": "overhead",
        "tasks": ["demo_a", "demo_b"],
        "seeds": [1, 2],
        "models": ["m"],
        "methods": ["jola"],
        "configs": [{"name": f"c{i}", "lr": 0.1 * (i + 1)} for i in range(5)],
        "fixed": {"epochs": 1},
        "scheduler": "fifo",
        "resources": {"cpu": 0.5, "gpu": 0},
        "max_failures": 0,
    }
    space = parse_space(raw, "inline", check_registry=False)
    out = {}
    for reuse in (False, True):
        with tempfile.TemporaryDirectory() as d:
            t = time.monotonic()
            outcome = run_sweep(
                space,
                storage_path=d,
                run_fn="sweep_stubs.scaled_run",
                make_config="sweep_stubs.identity",
                say=lambda s: None,
                reuse_actors=reuse,
            )
            wall = time.monotonic() - t
        assert outcome.counts()["finished"] == 20, outcome.counts()
        out[f"reuse_actors={reuse}"] = {
            "wall_s": round(wall, 1),
            "trials_per_s": round(20 / wall, 2),
        }
    print(json.dumps(out))
    ray.shutdown()


if __name__ == "__main__":
    main()
