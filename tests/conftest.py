"""Suite-wide settings: no hub access, no telemetry, one math thread per process.

On a 2-core machine several processes (pytest, Ray workers) share the cores; letting each of
them start a full OpenMP pool makes tiny matrix products many times slower, so every process
of the suite (Ray workers inherit the environment) uses one thread.
"""

import os
import socket

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"
os.environ["OMP_NUM_THREADS"] = "1"
os.environ["MKL_NUM_THREADS"] = "1"
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")

import torch  # noqa: E402  (after the thread settings above)

torch.set_num_threads(1)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def ray_cluster():
    """One local Ray for every test that needs a cluster (tests/sweep, tests/faults), started
    the way ``jola-ray sweep`` starts one (``cluster.connect``), on 127.0.0.1: 4 logical CPUs,
    256 MiB object store, no dashboard, Prometheus metrics on a free loopback port (reported
    every second). Starting Ray costs seconds, so the tests share it; ``run_sweep`` reuses an
    initialised Ray and leaves it running. Workers import test helpers by name from the
    directories the conftests put on ``PYTHONPATH`` before this starts."""
    os.environ.pop("RAY_ADDRESS", None)
    import ray

    from jola_ray.sweep.cluster import connect

    if ray.is_initialized():
        ray.shutdown()
    port = free_port()
    handle = connect(
        num_cpus=4,
        num_gpus=0,
        object_store_memory=256 << 20,
        _metrics_export_port=port,
        _system_config={"metrics_report_interval_ms": 1000},
        log_to_driver=False,
    )
    yield {"address": ray.get_runtime_context().gcs_address, "metrics_port": port}
    handle.shutdown()
